"""Parity packs: lossless round trip of real frames (any sizes), encoded files and labels;
every kind of damaged or foreign file is one ModelError line, never a traceback."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.data import datasets
from edgeinfer.data.frames import load_frames
from edgeinfer.data.packfile import (
    MANIFEST,
    PACK_VERSION,
    ParityPack,
    make_pack,
    read_pack,
    write_pack,
)
from edgeinfer.errors import ModelError
from edgeinfer.parity.tolerances import pack_entries
from edgeinfer.probs import softmax
from edgeinfer.spec import PreprocessSpec

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def spec() -> PreprocessSpec:
    return PreprocessSpec.from_json((ROOT / "models/efficientnet_lite0/spec.json").read_text())


@pytest.fixture(scope="module")
def photo_pack(spec) -> ParityPack:
    """Six real photos of different sizes, their PNG encodings and a per-photo reference
    (softmax of a fixed projection of the pixels: any [N, K] float array will do here)."""
    fs = load_frames("builtin:photos", spec)
    enc = [cv2.imencode(".png", f)[1].tobytes() for f in fs.frames]
    feats = np.stack([cv2.resize(f, (4, 4)).astype(np.float64).ravel() for f in fs.frames])
    ref = softmax(feats[:, :10] / 50.0)
    return make_pack(spec, [f"c{i}" for i in range(10)], fs.frames, ref, source={
        "framework": "torch", "weights_sha256": "ab" * 32}, data_name=fs.name, ids=fs.ids,
        truth=np.arange(len(fs.frames)) % 10, encoded=enc, tolerances=pack_entries())


@pytest.fixture(scope="module")
def pack_file(photo_pack, tmp_path_factory) -> Path:
    return write_pack(photo_pack, tmp_path_factory.mktemp("pack") / "photos.pack")


def test_round_trip_is_lossless(photo_pack, pack_file):
    back = read_pack(pack_file)
    assert back.n == photo_pack.n == 6
    assert len({f.shape for f in back.frames}) > 1  # frames of several sizes
    for a, b in zip(photo_pack.frames, back.frames, strict=True):
        assert a.dtype == b.dtype == np.uint8 and np.array_equal(a, b)
    assert np.array_equal(back.reference, photo_pack.reference.astype(np.float64))
    assert back.encoded == photo_pack.encoded
    assert np.array_equal(back.truth, photo_pack.truth)
    assert back.spec == photo_pack.spec and back.labels == photo_pack.labels
    assert back.ids == photo_pack.ids and back.source["weights_sha256"] == "ab" * 32
    # the PNGs decode back to exactly the frames (lossless encodings)
    for raw, f in zip(back.encoded, back.frames, strict=True):
        assert np.array_equal(cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR), f)


def test_manifest_is_versioned_and_documents_tolerances(pack_file):
    m = json.loads(zipfile.ZipFile(pack_file).read(MANIFEST))
    assert m["format"] == "edgeinfer-parity-pack" and m["version"] == PACK_VERSION
    assert m["tolerances"] == pack_entries()
    assert m["tolerances"]["onnx/int8"]["reason"]
    assert set(m["members"]) >= {"frames.npy", "frame_shapes.npy", "reference.npy"}


def test_fashion_pack_is_small(tmp_path):
    images, labels = datasets.load_fashion_mnist("test")
    idx = np.linspace(0, len(images) - 1, 200).astype(int)
    frames = [cv2.cvtColor(images[i], cv2.COLOR_GRAY2BGR) for i in idx]
    ref = np.full((200, 10), 0.1)
    spec = PreprocessSpec.from_json((ROOT / "models/fashion/spec.json").read_text())
    p = write_pack(make_pack(spec, datasets.FASHION_LABELS, frames, ref, truth=labels[idx]),
                   tmp_path / "f.pack")
    assert p.stat().st_size < 250_000  # 200 x 28 x 28 x 3 = 470 kB raw, deflated


def _rewrite(src: Path, dst: Path, edit) -> Path:
    """Copy a pack member by member, letting ``edit(name, bytes)`` change or drop members."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = edit(info.filename, zin.read(info.filename))
            if data is not None:
                zout.writestr(info.filename, data)
    return dst


def _manifest_edit(change):
    def edit(name: str, data: bytes) -> bytes:
        if name != MANIFEST:
            return data
        m = json.loads(data)
        change(m)
        return json.dumps(m).encode()
    return edit


def _flip_in_member(member: str):
    def edit(name: str, data: bytes) -> bytes:
        if name != member:
            return data
        b = bytearray(data)
        b[-5] ^= 0xFF
        return bytes(b)
    return edit


def _bad_shapes(m: dict) -> None:
    m["data"]["ids"] = m["data"]["ids"][:2]


@pytest.mark.parametrize("case, expect", [
    ("truncated", "not a zip archive, or truncated"),
    ("text", "not a zip archive"),
    ("empty", "not a zip archive"),
    ("no_manifest", "no manifest.json"),
    ("foreign_zip", "format None"),
    ("version", "version 99"),
    ("flipped_frames", "does not match its sha256"),
    ("missing_member", "lacks reference.npy"),
    ("inconsistent", "inconsistent"),
])
def test_damaged_or_foreign_pack_is_one_line(pack_file, tmp_path, case, expect):
    p = tmp_path / f"{case}.pack"
    raw = pack_file.read_bytes()
    if case == "truncated":
        p.write_bytes(raw[: len(raw) // 2])
    elif case == "text":
        p.write_text("this is not a pack\n")
    elif case == "empty":
        p.write_bytes(b"")
    elif case == "no_manifest":
        _rewrite(pack_file, p, lambda n, d: None if n == MANIFEST else d)
    elif case == "foreign_zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr(MANIFEST, json.dumps({"name": "something else"}))
        p.write_bytes(buf.getvalue())
    elif case == "version":
        _rewrite(pack_file, p, _manifest_edit(lambda m: m.update(version=99)))
    elif case == "flipped_frames":
        _rewrite(pack_file, p, _flip_in_member("frames.npy"))
    elif case == "missing_member":
        _rewrite(pack_file, p, lambda n, d: None if n == "reference.npy" else d)
    elif case == "inconsistent":
        _rewrite(pack_file, p, _manifest_edit(_bad_shapes))
    with pytest.raises(ModelError) as e:
        read_pack(p)
    msg = str(e.value)
    assert expect in msg and "\n" not in msg and str(p) in msg


def test_a_byte_flipped_on_disk_is_caught(pack_file, tmp_path):
    """Damage in the raw file (not a re-zipped member): zip CRC or sha256 catches it."""
    raw = bytearray(pack_file.read_bytes())
    for k in range(40, len(raw) - 200, max(1, len(raw) // 7)):
        bad = bytearray(raw)
        bad[k] ^= 0x55
        p = tmp_path / f"flip{k}.pack"
        p.write_bytes(bytes(bad))
        with pytest.raises(ModelError):
            read_pack(p)


def test_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe.pack"
    os.mkfifo(fifo)
    with pytest.raises(ModelError, match="named pipe"):
        read_pack(fifo)  # refused before open(): never blocks
    with pytest.raises(ModelError, match="does not exist"):
        read_pack(tmp_path / "missing.pack")
    with pytest.raises(ModelError, match="directory"):
        read_pack(tmp_path)


def test_make_pack_checks_lengths(spec):
    f = [np.zeros((8, 8, 3), np.uint8)] * 3
    with pytest.raises(ValueError, match="do not match 3 frames"):
        make_pack(spec, ["a", "b"], f, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="3 labels for 2 outputs"):
        make_pack(spec, ["a", "b", "c"], f, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="uint8"):
        make_pack(spec, ["a", "b"], [np.zeros((8, 8, 3))] * 3, np.zeros((3, 2)))


def test_artifact_reference_round_trip_and_consistency(photo_pack, tmp_path):
    """`pack --artifact`: the framework on one artifact's pixels, tied to its sha256; an
    entry without its array (or of another shape) is a damaged pack, not a silent PASS."""
    from dataclasses import replace

    own = replace(photo_pack, artifact={"name": "m.onnx", "sha256": "cd" * 32,
                                        "format": "onnx", "dtype": "fp32"},
                  artifact_reference=photo_pack.reference[::-1].copy())
    back = read_pack(write_pack(own, tmp_path / "own.pack"))
    assert back.artifact == own.artifact
    np.testing.assert_allclose(back.artifact_reference, own.artifact_reference, atol=1e-7)
    assert read_pack(write_pack(photo_pack, tmp_path / "plain.pack")).artifact is None
    half = write_pack(replace(own, artifact_reference=None), tmp_path / "half.pack")
    with pytest.raises(ModelError, match="inconsistent .*artifact reference"):
        read_pack(half)


@pytest.mark.parametrize("edit", [
    "truth_out_of_range", "truth_negative", "truth_length", "reference_rows", "label_count",
    "empty_frame", "reference_ints", "artifact_shape",
], ids=str)
def test_each_consistency_check_refuses_alone(photo_pack, tmp_path, edit):
    """A pack whose members all carry valid sha256s but disagree with each other (a buggy
    writer, a hand-made file) is one ModelError, check by check: found by mutation testing,
    where only the ids-length case was covered and the others could be removed unnoticed."""
    from dataclasses import replace

    n, k = photo_pack.n, photo_pack.reference.shape[1]
    bad = {
        "truth_out_of_range": lambda p: replace(p, truth=np.full(n, k)),
        "truth_negative": lambda p: replace(p, truth=np.full(n, -1)),
        "truth_length": lambda p: replace(p, truth=np.zeros(n - 1, np.int64)),
        "reference_rows": lambda p: replace(p, reference=p.reference[:-1]),
        "label_count": lambda p: replace(p, labels=p.labels[:-1]),
        "empty_frame": lambda p: replace(p, frames=[np.zeros((0, 4, 3), np.uint8)] + p.frames[1:]),
        "reference_ints": lambda p: replace(p, reference=np.zeros((n, k), np.int64)),
        "artifact_shape": lambda p: replace(p, artifact={"sha256": "ab" * 32},
                                            artifact_reference=p.reference[:, :-1]),
    }[edit](replace(photo_pack, encoded=None))
    path = tmp_path / "bad.pack"
    if edit == "reference_ints":  # write_pack casts to float32: write the member by hand
        _rewrite(write_pack(bad, tmp_path / "w.pack"), path, _int_reference)
    else:
        write_pack(bad, path)
    with pytest.raises(ModelError, match="is (inconsistent|damaged)"):
        read_pack(path)


def _int_reference(name: str, data: bytes) -> bytes:
    if name == "reference.npy":
        buf = io.BytesIO()
        np.save(buf, np.zeros((6, 10), np.int64))
        return buf.getvalue()
    if name == MANIFEST:
        m = json.loads(data)
        buf = io.BytesIO()
        np.save(buf, np.zeros((6, 10), np.int64))
        import hashlib

        m["members"]["reference.npy"]["sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
        return json.dumps(m).encode()
    return data


def _set(path: str, value):
    """A manifest edit setting the field at a dotted path (keys may hold dots: a '|'
    separates them instead when the path has one)."""
    keys = path.split("|") if "|" in path else path.split(".")

    def change(m: dict) -> None:
        node = m
        for k in keys[:-1]:
            node = node[k]
        node[keys[-1]] = value
    return change


@pytest.mark.parametrize("field, value, expect", [
    ("data", [1], "field data must be an object, not list"),
    ("labels", [1, 2], "field labels must be a list of strings"),
    ("data.ids", 5, "field data.ids must be a list"),
    ("data.n", True, "field data.n must be an integer, not a boolean"),
    ("tolerances|onnx/fp32|max_abs", "big", "field tolerances.onnx/fp32.max_abs must be a num"),
    ("tolerances|onnx/fp32|min_top1", 2, "min_top1 must be a number in [0, 1]"),
    ("members|reference.npy|shape", [-1, 10], "field members.reference.npy.shape must be"),
    ("members|frames.npy|dtype", "float32", "members.frames.npy.dtype must be 'uint8'"),
    ("members|evil.npy", {"sha256": "0" * 64}, "not a member of a version 1 pack"),
    ("spec", {"size": "big"}, "damaged manifest"),
    ("source.weights_sha256", 7, "field source.weights_sha256 must be a string"),
    ("encoded", "yes", "field encoded must be true or false"),
], ids=lambda v: v if isinstance(v, str) and len(v) < 30 else "")
def test_every_manifest_field_is_typed(pack_file, tmp_path, field, value, expect):
    """One schema: a field of the wrong type is a damaged pack naming the field (issue 31:
    ``"data": [1]`` was an AttributeError traceback, ``max_abs: "big"`` was accepted)."""
    p = _rewrite(pack_file, tmp_path / "typed.pack", _manifest_edit(_set(field, value)))
    with pytest.raises(ModelError) as e:
        read_pack(p)
    assert expect in str(e.value) and "\n" not in str(e.value)


def _member(name: str, blob: bytes):
    """Replace one member and make its manifest sha256 right, leaving its declared dtype
    and shape alone: only the .npy header tells the lie."""
    import hashlib

    def edit(n: str, data: bytes) -> bytes:
        if n == name:
            return blob
        if n == MANIFEST:
            m = json.loads(data)
            m["members"][name]["sha256"] = hashlib.sha256(blob).hexdigest()
            return json.dumps(m).encode()
        return data
    return edit


def test_npy_header_is_checked_before_allocation(pack_file, tmp_path):
    """A header declaring 2**45 bytes behind a right sha256: refused from the header, not
    a 32 TiB allocation (numpy's _ArrayMemoryError before)."""
    head = io.BytesIO()
    np.lib.format.write_array_header_1_0(head, {"descr": "<f4", "fortran_order": False,
                                                "shape": (2**40, 8)})
    p = _rewrite(pack_file, tmp_path / "lie.pack",
                 _member("reference.npy", head.getvalue() + bytes(16)))
    with pytest.raises(ModelError, match=r"reference.npy: header float32 \[1099511627776, 8\] "
                       "does not match the manifest"):
        read_pack(p)


@pytest.mark.parametrize("member, array, expect", [
    ("reference.npy", np.full((6, 10), np.nan, np.float32), "reference.npy holds NaN"),
    ("reference.npy", np.full((6, 10), 3.0, np.float32), "outside [0, 1]"),
    ("labels.npy", np.full(6, 0.5), "labels.npy: header float64"),
    ("labels.npy", np.full(6, 10, np.int64), "labels.npy holds class indices outside"),
])
def test_the_pack_not_the_artifact_is_blamed_for_bad_values(pack_file, tmp_path, member,
                                                             array, expect):
    """NaN references made verify blame the artifact; NaN or fractional labels passed."""
    buf = io.BytesIO()
    np.save(buf, array)
    p = _rewrite(pack_file, tmp_path / "values.pack", _member(member, buf.getvalue()))
    with pytest.raises(ModelError, match="is damaged") as e:
        read_pack(p)
    assert expect in str(e.value)


def test_an_empty_pack_is_refused(spec, tmp_path):
    """verify on zero frames was a ValueError traceback from the comparison."""
    p = write_pack(make_pack(spec, ["a", "b"], [], np.zeros((0, 2))), tmp_path / "e.pack")
    with pytest.raises(ModelError, match="holds no frames"):
        read_pack(p)
