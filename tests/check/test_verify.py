"""``edgeinfer verify`` on real artifacts and a real parity pack (200 Fashion-MNIST test frames):
passes fp32, fails a perturbed artifact naming the figure, will not certify int8 on too few
frames, refuses foreign/damaged packs with one line (exit 2), runs without any framework."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edgeinfer.check.verify.pack import build_pack
from edgeinfer.check.verify.run import NOT_CERTIFIED, PASS, verify
from edgeinfer.cli import main
from edgeinfer.converter.api import convert
from edgeinfer.converter.int8.targets import KEY_QUANTIZATION, target_warning
from edgeinfer.converter.preprocess_graph import PREFIX_NODE_PREFIX
from edgeinfer.data import datasets
from edgeinfer.data.packfile import make_pack, read_pack, write_pack
from edgeinfer.parity.certify import frames_to_certify
from edgeinfer.parity.stats import wilson
from edgeinfer.spec import PreprocessSpec

N = 200


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("verify")


@pytest.fixture(scope="module")
def fp32(work) -> Path:
    return convert("fashion", work / "fashion.onnx", parity_limit=N).path


@pytest.fixture(scope="module")
def int8(work) -> Path:
    """8-bit weights for this VNNI-class target; gated by the converter on 200 test frames."""
    return convert("fashion", work / "fashion-int8.onnx", quantize="int8", target="x86-vnni",
                   calibration_limit=128, parity_limit=N).path


@pytest.fixture(scope="module")
def pack(work) -> Path:
    return write_pack(build_pack("fashion", "builtin:fashion-test", limit=N),
                      work / "fashion.pack")


@pytest.fixture(scope="module")
def perturbed(fp32, work) -> Path:
    """The fp32 artifact with its last layer's weights scaled by 1.3: metadata unchanged."""
    m = onnx.load_model(fp32)
    inits = [i for i in m.graph.initializer if not i.name.startswith(PREFIX_NODE_PREFIX)
             and len(i.dims) == 2]
    w = inits[-1]
    w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w) * 1.3, w.name))
    out = work / "perturbed.onnx"
    onnx.save_model(m, out)
    return out


def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_fp32_passes_with_report(fp32, pack, work, capsys):
    rc, out, _ = _cli(capsys, "verify", fp32, pack, "--json", work / "v.json",
                      "--report", work / "rep", "--latency-runs", 10)
    assert rc == 0, out
    assert out.strip().splitlines()[-1].startswith("PASS: onnx-fp32 on 200 frames")
    d = json.loads((work / "v.json").read_text())
    step = d["steps"][0]
    assert d["verdict"] == PASS and step["n"] == N and step["max_abs"] < 1e-4
    assert d["accuracy"]["artifact"]["n"] == N
    assert {"p50", "p90", "p99"} <= set(d["latency_ms"]) and d["peak_rss_mb"] > 10
    assert d["consistency"]["rerun"] == 0.0
    assert {p.name for p in (work / "rep").iterdir()} >= {"verify.json", "verify.md",
                                                          "verify.png"}


def test_perturbed_weights_fail_naming_the_figure(perturbed, pack, capsys):
    rc, out, _ = _cli(capsys, "verify", perturbed, pack, "-q", "--latency-runs", 3)
    assert rc == 1
    line = out.strip().splitlines()[-1]
    assert line.startswith("FAIL:") and "max|dp|" in line and "> 0.0001" in line


def test_int8_on_200_frames_is_not_certified(int8, pack, capsys):
    """Every figure is in tolerance, but 200 frames cannot certify >= 99% agreement."""
    res = verify(int8, pack, latency_runs=3)
    assert res.dtype == "int8" and res.steps[0].comparison.top1_agreement >= 0.99
    assert res.verdict == NOT_CERTIFIED and res.exit_code == 0
    assert "frames disagree; to certify >= 99% you need at least" in res.message()
    rc, out, _ = _cli(capsys, "verify", int8, pack, "-q", "--strict", "--latency-runs", 3)
    assert rc == 1 and "NOT CERTIFIED" in out


def test_frames_to_certify_is_the_smallest_n():
    n = frames_to_certify(0.99)
    assert wilson(n, n)[0] >= 0.99 > wilson(n - 1, n - 1)[0]
    assert frames_to_certify(1.0) is None


def test_verify_imports_no_framework(fp32, pack):
    """A fresh interpreter runs the whole CLI verify: torch/tensorflow/onnx never load."""
    code = ("import sys; from edgeinfer.cli import main\n"
            f"rc = main(['verify', {str(fp32)!r}, {str(pack)!r}, '-q', '--latency-runs', '3'])\n"
            "bad = {'torch', 'tensorflow', 'keras', 'onnx', 'litert_torch'} & set(sys.modules)\n"
            "print('LOADED', sorted(bad)); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "LOADED []" in r.stdout


def _variant(pack: Path, out: Path, **change) -> Path:
    p = read_pack(pack)
    kw = {"source": p.source, "truth": p.truth, "ids": p.ids} | change
    spec, labels = kw.pop("spec", p.spec), kw.pop("labels", p.labels)
    return write_pack(make_pack(spec, labels, p.frames, p.reference, **kw), out)


def test_pack_from_another_model_or_spec_is_exit_2(fp32, pack, work, capsys):
    cases = {
        "labels": (_variant(pack, work / "l.pack", labels=[f"x{i}" for i in range(10)]),
                   "another model (the class names differ)"),
        "weights": (_variant(pack, work / "w.pack", source={"weights_sha256": "0" * 64}),
                    "another model (source weights sha256"),
        "spec": (_variant(pack, work / "s.pack", spec=PreprocessSpec.from_dict(
            read_pack(pack).spec.to_dict() | {"mean": [0.5]})), "different preprocessing spec"),
    }
    for path, expect in cases.values():
        rc, out, err = _cli(capsys, "verify", fp32, path)
        assert rc == 2 and out == ""
        assert expect in err and err.count("\n") == 1 and err.startswith("edgeinfer: error:")


def test_damaged_pack_is_exit_2(fp32, pack, work, capsys):
    raw = pack.read_bytes()
    (work / "cut.pack").write_bytes(raw[:len(raw) // 3])
    rc, out, err = _cli(capsys, "verify", fp32, work / "cut.pack")
    assert rc == 2 and "not a zip archive, or truncated" in err and err.count("\n") == 1
    rc, _, err = _cli(capsys, "verify", pack, pack)  # a pack given as the artifact
    assert rc == 2 and err.count("\n") == 1


def test_decode_check_with_encoded_files(fp32, work, capsys):
    """A folder of PNG files: the pack keeps the encoded bytes, the device decodes them."""
    images, _ = datasets.load_fashion_mnist("test")
    d = work / "pngs"
    d.mkdir()
    for i in range(12):
        cv2.imwrite(str(d / f"{i:02d}.png"), images[i * 97])
    p = write_pack(build_pack("fashion", str(d)), work / "png.pack")
    assert read_pack(p).encoded is not None
    res = verify(fp32, p, latency_runs=3)
    assert [s.name for s in res.steps] == ["artifact", "decode"]
    assert res.decode["identical"] == 12 and res.steps[1].verdict == PASS


def test_target_warning_on_a_cpu_without_vnni(int8):
    m = onnx.load_model(int8)
    props = {p.key: p.value for p in m.metadata_props}
    q = json.loads(props[KEY_QUANTIZATION])
    assert q["target"] == "x86-vnni" and q["reduce_range"] is False
    assert "without VNNI" in target_warning(props, {}, here="x86-avx2")
    assert target_warning(props, {}, here="x86-vnni") is None
    assert target_warning(props, {}, here="arm64") is None
    seven = props | {KEY_QUANTIZATION: json.dumps(q | {"reduce_range": True,
                                                        "target": "x86-avx2"})}
    assert "7-bit weights" in target_warning(seven, {}, here="arm64")


def test_machine_target_from_cpuinfo():
    from edgeinfer.converter.int8.targets import cpu_flags, machine_target, resolve_target
    from edgeinfer.errors import ConfigError

    arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid asimddp\nCPU part\t: 0xd0b\n"
    x86 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 fma\n"
    assert "asimddp" in cpu_flags(arm) and "avx2" in cpu_flags(x86)
    assert machine_target("aarch64", cpu_flags(arm)) == "arm64"
    assert machine_target("x86_64", cpu_flags(x86)) == "x86-avx2"
    assert machine_target("x86_64", cpu_flags(x86) | {"avx512_vnni"}) == "x86-vnni"
    assert resolve_target("auto") == machine_target() and resolve_target(None) is None
    with pytest.raises(ConfigError, match="not one of"):
        resolve_target("riscv")


def test_shrink_keeps_decode_check_consistent():
    """--max-side: large photos are downscaled, their encoded entry becomes a lossless PNG."""
    from edgeinfer.check.verify.pack import shrink
    from edgeinfer.data.frames import load_frames

    spec = PreprocessSpec.from_json(
        (Path(__file__).resolve().parents[2] / "models/efficientnet_lite0/spec.json").read_text())
    fs = load_frames("builtin:photos", spec)
    blobs = [cv2.imencode(".jpg", f)[1].tobytes() for f in fs.frames]
    small = [i for i, f in enumerate(fs.frames) if max(f.shape[:2]) <= 512]
    kept = {i: blobs[i] for i in small}
    n = shrink(fs, blobs, 512)
    assert n == len(fs.frames) - len(small) > 0
    assert all(max(f.shape[:2]) <= 512 for f in fs.frames)
    for i, (f, b) in enumerate(zip(fs.frames, blobs, strict=True)):
        if i in kept:
            assert b == kept[i]  # untouched frames keep their original file
        else:
            assert np.array_equal(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR), f)


def test_one_artifact_gets_one_word_from_every_command(int8, pack, capsys):
    """convert (stored), check, verify, info and the server's metadata judge the same
    comparison (the framework vs the int8 artifact on the same 200 test frames): the same
    word and the same reason everywhere (issue 17: check said PASS where verify did not)."""
    import httpx

    from edgeinfer.runtime.metadata import read_metadata
    from edgeinfer.serve.config import ServeConfig
    from edgeinfer.serve.server import serve_in_thread

    par = read_metadata(int8).parity
    word, why = par["verdict"], par["certification"]
    assert word == NOT_CERTIFIED and why.startswith(f"{par['flips']} of {N} frames disagree")
    rc, out, _ = _cli(capsys, "check", "fashion", int8, "--data", "fashion-test", "--limit", N,
                      "--no-timing", "-q")
    assert rc == 0 and f"{word} at step onnx-int8: {why}" in out, out
    rc, out, _ = _cli(capsys, "check", "fashion", int8, "--data", "fashion-test", "--limit", N,
                      "--no-timing", "-q", "--strict")
    assert rc == 1
    rc, out, _ = _cli(capsys, "verify", int8, pack, "-q", "--latency-runs", 3)
    last = out.strip().splitlines()[-1]
    assert rc == 0 and last.startswith(f"{word}:") and why in last
    rc, out, _ = _cli(capsys, "info", int8)
    assert rc == 0 and f"parity:     {word} on {N} frames" in out and why in out
    assert "int8:       target x86-vnni, QDQ U8S8, 8-bit weights, per-channel" in out
    with serve_in_thread([int8], ServeConfig(port=0)) as url:
        meta = httpx.get(f"{url}/v2/models/{Path(int8).stem}").json()
    assert meta["parameters"]["certification"] == word


def test_pack_artifact_cli_stores_the_model_stage_of_that_file(fp32, int8, work, capsys):
    """`pack --artifact`: the line says so, verify judges the model stage against it; an
    int8 ONNX file has no readable prefix output and is refused in one line (exit 2)."""
    p = work / "own.pack"
    rc, out, _ = _cli(capsys, "pack", "fashion", "--data", "builtin:fashion-test", "--limit",
                      40, "--artifact", fp32, "-o", p)
    assert rc == 0 and f"with the model stage of {fp32.name}" in out
    assert read_pack(p).artifact["format"] == "onnx"
    rc, out, _ = _cli(capsys, "verify", fp32, p)
    assert rc == 0 and out.splitlines()[-1].startswith("PASS")
    assert "on the artifact's own pixels" in out  # the model stage row names its reference
    rc, _out, err = _cli(capsys, "pack", "fashion", "--data", "builtin:fashion-test",
                         "--limit", 8, "--artifact", int8, "-o", work / "bad.pack")
    assert rc == 2 and "exposes no preprocessing output" in err.splitlines()[-1]
    assert "Traceback" not in err and "running" not in err  # refused before the framework ran
