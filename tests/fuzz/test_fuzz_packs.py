"""Hostile parity packs: a damaged pack is one ModelError line naming what is wrong, and a
pack that reads is one ``verify`` can trust (finite probabilities, labels in range, one
entry per frame) - never a traceback, never an allocation a header asked for unchecked.

Structure-aware mutations of a real pack (the fashion artifact's own outputs on eight
Fashion-MNIST frames, with encoded PNGs, labels and an artifact reference): manifest
fields set to other JSON values or removed; .npy headers rewritten (shape, dtype, order),
with the member's sha256 made right again so the header, not the checksum, must be
caught; member data cut, extended or refilled with NaN/inf/out-of-range values; members
dropped or the zip's bytes flipped. The regression files of issue 31 (Why 5, made by
tools/make_hostile_files.py) run through ``verify`` itself.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeinfer.data.packfile import MANIFEST, ParityPack, make_pack, read_pack, write_pack
from edgeinfer.errors import ModelError
from tests.fuzz.test_fuzz_artifacts import JSON_VALUES, WILD_INTS, check_cli

REGRESSIONS = Path(__file__).parent / "regressions"
REPO = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])
DTYPES = ["<f4", "<f8", "<i8", "<i4", "|u1", "|b1", ">f4", ">i8", "<U3", "|O"]


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, a, allow_pickle=a.dtype == object)
    return buf.getvalue()


def rezip(raw: bytes, members: dict[str, bytes | None], manifest=None,
          fix_sha: bool = True) -> bytes:
    z = zipfile.ZipFile(io.BytesIO(raw))
    m = json.loads(z.read(MANIFEST))
    blobs = {i.filename: z.read(i.filename) for i in z.infolist() if i.filename != MANIFEST}
    for k, v in members.items():
        if v is None:
            blobs.pop(k, None)
        else:
            blobs[k] = v
            if fix_sha and isinstance(m, dict) and isinstance(m.get("members"), dict) \
                    and isinstance(m["members"].get(k), dict):
                m["members"][k]["sha256"] = hashlib.sha256(v).hexdigest()
    if manifest is not None:
        m = manifest(m)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as out:
        out.writestr(MANIFEST, json.dumps(m))
        for k, v in blobs.items():
            out.writestr(k, v)
    return buf.getvalue()


def _paths(v, prefix=()):
    yield prefix
    if isinstance(v, dict):
        for k, x in v.items():
            yield from _paths(x, (*prefix, k))
    elif isinstance(v, list):
        for i, x in enumerate(v[:3]):
            yield from _paths(x, (*prefix, i))


@st.composite
def pack_mutants(draw: st.DrawFn, seed: bytes) -> bytes:
    """One structure-aware mutation of a pack, as the bytes of a zip file."""
    z = zipfile.ZipFile(io.BytesIO(seed))
    names = sorted(i.filename for i in z.infolist() if i.filename != MANIFEST)
    kind = draw(st.sampled_from(["manifest", "header", "size", "values", "drop", "bytes"]))
    if kind == "manifest":
        m = json.loads(z.read(MANIFEST))
        path = draw(st.sampled_from([p for p in _paths(m) if p]))
        value = draw(JSON_VALUES)
        delete = draw(st.booleans())

        def edit(m):
            node = m
            for k in path[:-1]:
                node = node[k]
            if delete and isinstance(node, dict):
                del node[path[-1]]
            else:
                node[path[-1]] = value
            return m
        return rezip(seed, {}, edit)
    name = draw(st.sampled_from(names))
    blob = z.read(name)
    f = io.BytesIO(blob)
    np.lib.format.read_magic(f)
    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
    body = blob[f.tell():]
    fix = draw(st.integers(0, 9)) > 0  # mostly a right sha256: the deeper checks must hold
    if kind == "header":
        new_shape = tuple(draw(st.lists(WILD_INTS.filter(lambda v: v >= 0), min_size=0,
                                        max_size=3))) if draw(st.booleans()) else shape
        head = io.BytesIO()
        np.lib.format.write_array_header_1_0(head, {
            "descr": draw(st.sampled_from([dtype.str, *DTYPES])), "shape": new_shape,
            "fortran_order": draw(st.booleans()) if draw(st.booleans()) else fortran})
        declare = draw(st.booleans())

        def edit(m):
            if declare:
                m["members"][name]["shape"] = list(new_shape)
            return m
        return rezip(seed, {name: head.getvalue() + body}, edit, fix)
    if kind == "size":
        cut = draw(st.integers(0, len(body) + 16))
        return rezip(seed, {name: blob[:len(blob) - len(body)] + body[:cut]
                            + draw(st.binary(max_size=16))}, None, fix)
    if kind == "values":
        a = np.lib.format.read_array(io.BytesIO(blob))
        if a.size:
            special = draw(st.sampled_from([np.nan, np.inf, -np.inf, -1, 2, 10, 2**40, 0.5]))
            flat = a.astype(np.float64).ravel()
            idx = draw(st.lists(st.integers(0, a.size - 1), min_size=1, max_size=4))
            flat[idx] = special
            with np.errstate(invalid="ignore", over="ignore"):
                a = (flat.reshape(a.shape) if a.dtype.kind == "f" or not np.isfinite(flat).all()
                     else flat.astype(a.dtype).reshape(a.shape))
        return rezip(seed, {name: npy(np.asarray(a))}, None, fix)
    if kind == "drop":
        return rezip(seed, {name: None}, None, fix)
    b = bytearray(seed)
    for _ in range(draw(st.integers(1, 3))):
        b[draw(st.integers(0, len(b) - 1))] ^= 1 << draw(st.integers(0, 7))
    return bytes(b)


def trustworthy(p: ParityPack) -> None:
    """What verify relies on in a pack that reads."""
    n, k = p.reference.shape
    assert n == p.n >= 1 and k >= 1
    assert all(f.dtype == np.uint8 and f.ndim == 3 and f.size for f in p.frames)
    assert np.isfinite(p.reference).all() and p.reference.min() >= 0
    assert p.reference.max() <= 1 + 1e-5
    if p.truth is not None:
        assert p.truth.dtype == np.int64 and p.truth.shape == (n,)
        assert p.truth.min() >= 0 and p.truth.max() < k
    if p.ids is not None:
        assert len(p.ids) == n and all(isinstance(i, str) for i in p.ids)
    if p.encoded is not None:
        assert len(p.encoded) == n and all(isinstance(b, bytes) for b in p.encoded)
    for e in p.tolerances.values():
        assert isinstance(e["max_abs"], (int, float)) and e["max_abs"] >= 0
        assert e.get("min_top1") is None or 0 <= e["min_top1"] <= 1
    if p.artifact_reference is not None:
        assert p.artifact_reference.shape == p.reference.shape
        assert isinstance(p.artifact, dict) and isinstance(p.artifact["sha256"], str)
    assert isinstance(p.source, dict) and isinstance(p.data_name, str)


def build_seed_pack(artifact: Path, out: Path) -> Path:
    """Eight fashion frames; reference = the artifact's own outputs, so verify says PASS;
    labels, encoded PNGs and an artifact reference, so every member is there to mutate."""
    from edgeinfer.artifact import ArtifactMetadata
    from edgeinfer.data import datasets
    from edgeinfer.parity.tolerances import pack_entries
    from edgeinfer.runtime.loader import open_backend

    images, labels = datasets.load_fashion_mnist("test")
    frames = [cv2.cvtColor(images[i], cv2.COLOR_GRAY2BGR) for i in range(8)]
    backend = open_backend(artifact, 1)
    meta = ArtifactMetadata.from_props(backend.metadata_props())
    ref = backend.run(np.stack(frames))
    art = Path(artifact).read_bytes()
    pack = make_pack(meta.spec, meta.labels, frames, ref, source={"framework": "onnx"},
                     data_name="fashion-test", ids=[f"t{i}" for i in range(8)],
                     truth=labels[:8], encoded=[cv2.imencode(".png", f)[1].tobytes()
                                                for f in frames], tolerances=pack_entries())
    pack.artifact = {"name": Path(artifact).name, "sha256": hashlib.sha256(art).hexdigest(),
                     "format": "onnx", "dtype": "fp32"}
    pack.artifact_reference = ref
    return write_pack(pack, out)


@pytest.fixture(scope="module")
def seed_pack(fashion_artifact, tmp_path_factory) -> Path:
    return build_seed_pack(fashion_artifact, tmp_path_factory.mktemp("fuzzpack") / "seed.pack")


@SETTINGS
@given(data=st.data())
def test_pack_mutants_are_one_line_or_trustworthy(seed_pack, tmp_path, data) -> None:
    path = tmp_path / "mutant.pack"
    path.write_bytes(data.draw(pack_mutants(seed_pack.read_bytes())))
    try:
        pack = read_pack(path)
    except ModelError as e:
        assert "\n" not in str(e) and str(path) in str(e)
        return
    trustworthy(pack)


#: What each regression pack must be refused for (the field or member it names).
REFUSED = {
    "pack_data_is_list.pack": "field data must be an object",
    "pack_empty.pack": "holds no frames",
    "pack_corrupt_deflate.pack": "damaged manifest (corrupt deflate data)",
    "pack_npy_header_2p45.pack": "bytes of arrays, above the limit",
    "pack_npy_header_2p45_only.pack": "reference.npy: header float32 [1099511627776, 8]",
    "pack_reference_nan.pack": "reference.npy holds NaN",
    "pack_tolerance_not_number.pack": "field tolerances.onnx/fp32.max_abs must be a number",
    "pack_truth_fractional.pack": "members.labels.npy.dtype must be 'int64'",
    "pack_truth_nan.pack": "members.labels.npy.dtype must be 'int64'",
    "pack_truth_nan_header_only.pack": "labels.npy: header float64",
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_regression_packs_are_refused_naming_the_damage(name, fashion_artifact, capfd):
    """Issue 31 Why 5, each case: before, AttributeError / _ArrayMemoryError / ValueError
    tracebacks (exit 1), the artifact blamed for the pack's NaN (exit 1), or PASS on NaN or
    fractional labels and a tolerance of "big" (exit 0). Now one line, exit 2."""
    path = REGRESSIONS / name
    with pytest.raises(ModelError, match="parity pack") as e:
        read_pack(path)
    assert REFUSED[name] in str(e.value) and "\n" not in str(e.value)
    args = ["verify", str(fashion_artifact), str(path), "--latency-runs", "1", "-q"]
    assert check_cli(args, capfd) == 2


def test_regression_intact_pack_still_passes(fashion_artifact, capfd) -> None:
    ok = REGRESSIONS / "pack_ok.pack"
    trustworthy(read_pack(ok))
    args = ["verify", str(fashion_artifact), str(ok), "--latency-runs", "1", "-q"]
    assert check_cli(args, capfd) == 0


# VmHWM, not ru_maxrss: the latter is preserved across execve (a big parent's peak).
_READ = ("import re, sys\nfrom edgeinfer.data.packfile import read_pack\n"
         "p = read_pack(sys.argv[1])\nprint(p.n, int(re.search(r'VmHWM:\\s+(\\d+) kB', "
         "open('/proc/self/status').read()).group(1)) // 1024)\n")


def _peak_mb(path: Path) -> int:
    r = subprocess.run([sys.executable, "-c", _READ, str(path)], cwd=REPO, env=dict(
        os.environ), capture_output=True, text=True, timeout=300, check=True)
    return int(r.stdout.split()[1])


def test_members_are_held_once(tmp_path) -> None:
    """A pack that unpacks to 300 MB is read at about 300 MB above the interpreter, not 600
    (each member was held as bytes and again as an array: a 1.5 GB pack peaked at 3.0 GB)."""
    from tools.make_hostile_files import base_pack, write_bomb

    small = tmp_path / "small.pack"
    small.write_bytes(base_pack(None, 1))
    big = write_bomb(tmp_path / "big.pack", 300_000_000, small.read_bytes())
    base, peak = _peak_mb(small), _peak_mb(big)
    assert peak - base < 1.4 * 300_000_000 / 2**20, (base, peak)


def test_writer_refuses_what_a_device_would_refuse(tmp_path, monkeypatch) -> None:
    """The cap is the writer's too: `pack` says --max-side instead of writing a file that
    `verify` refuses (the limit lowered here so the test allocates kilobytes, not 1 GiB)."""
    from edgeinfer.data import packfile
    from edgeinfer.errors import ConfigError

    monkeypatch.setattr(packfile, "MAX_UNPACKED_BYTES", 10_000)
    spec = read_pack(REGRESSIONS / "pack_ok.pack").spec
    frames = [np.zeros((64, 64, 3), np.uint8)] * 2
    with pytest.raises(ConfigError, match="--max-side"):
        write_pack(make_pack(spec, [], frames, np.full((2, 3), 1 / 3)), tmp_path / "x.pack")


def test_an_undecodable_encoded_file_names_the_pack_entry(seed_pack, fashion_artifact,
                                                          tmp_path) -> None:
    """Found by the on-demand run: a corrupt PNG inside a pack (sha256 right) reached the
    device decoder and was reported as if it were the user's image. (libpng still prints
    its own line on fd 2: that is the image decoder's, see docs/security/hostile_files.md.)"""
    from edgeinfer.check.verify.run import verify

    raw = seed_pack.read_bytes()
    z = zipfile.ZipFile(io.BytesIO(raw))
    blob = bytearray(z.read("encoded.npy"))
    blob[-40] ^= 0xFF  # inside the last PNG's IDAT
    path = tmp_path / "png.pack"
    path.write_bytes(rezip(raw, {"encoded.npy": bytes(blob)}))
    with pytest.raises(ModelError, match="the pack's encoded file t7 cannot be decoded"):
        verify(fashion_artifact, path, latency_runs=1)
