"""``check``, ``pack`` and ``verify`` on the bundled detector (issue 28.3): the fp32 artifact
passes with convert's gate figures, an int8 artifact quantised without the accuracy control
(16 calibration frames, every Conv int8) fails on F1, a pack whose stored boxes are shifted
by 2 px fails verify, verify loads no framework, and a foreign or damaged pack is one line,
exit 2. Frames: convert's gate set (--data builtin:detect, 72 frames of three aspects)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeinfer.check.verify.detect_pack import build_detect_pack
from edgeinfer.cli import main
from edgeinfer.converter.detect_convert import convert_detector
from edgeinfer.converter.detect_frames import parity_frames
from edgeinfer.data.packfile import read_pack, write_pack
from edgeinfer.parity.tolerances import tolerance

pytestmark = pytest.mark.slow
DATA = "builtin:detect"


def _quiet(*_a: object, **_k: object) -> None:
    """A Progress (message, done, total) that says nothing."""


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("detcheck")


@pytest.fixture(scope="module")
def fp32(work) -> Path:
    # gated on 24 frames (a conversion is not what is tested here)
    return convert_detector("fashion-detector", work / "det.onnx",
                            frames=parity_frames(per_aspect=8), progress=_quiet)[0]


@pytest.fixture(scope="module")
def plain_int8(fp32, work) -> Path:
    """Every Conv int8, MinMax on 16 calibration frames, no accuracy control: measured
    F1 0.987 vs fp32 on the gate's frames (docs/verify/detection.md)."""
    from edgeinfer.converter.assemble import with_metadata
    from edgeinfer.converter.detect_frames import calibration_frames
    from edgeinfer.converter.detect_int8 import OnnxDetInt8
    from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector

    b = OnnxDetInt8(onnx.load(fp32), calibration_frames(16), lambda *_a, **_k: None)
    try:
        q = b.build()
    finally:
        b.close()
    meta = ArtifactDetector(fp32).metadata
    meta = dataclasses.replace(meta, provenance=meta.provenance | {"quantize": "int8"})
    out = work / "det-int8.onnx"
    out.write_bytes(with_metadata(onnx.load_from_string(q), meta).SerializeToString())
    return out


@pytest.fixture(scope="module")
def pack(work) -> Path:
    return write_pack(build_detect_pack("fashion-detector", DATA), work / "det.pack")


def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_check_passes_fp32_and_fails_an_int8_with_low_f1(fp32, plain_int8, work, capsys
                                                         ) -> None:
    rc, out, _ = _cli(capsys, "check", "fashion-detector", fp32, plain_int8, "--data", DATA,
                      "-q", "--json", work / "check.json")
    res = json.loads((work / "check.json").read_text())
    steps = {s["name"]: s for s in res["steps"]}
    f = steps["onnx-fp32"]
    assert f["verdict"] == "PASS", f["reason"]  # 72 frames: enough boxes to certify
    assert set(f["vs_parent"]) == {"portrait", "landscape", "square", "all"}
    assert f["vs_parent"]["all"]["f1"] == 1.0 and f["vs_parent"]["all"]["matched"] > 191
    assert f["vs_parent"]["all"]["max_box_error_px"] <= tolerance("detect_boxes").max_abs
    assert f["stages"]["preprocessing_grey_levels"] <= 0.5
    q = steps["onnx-int8"]
    assert q["parent"] == "onnx-fp32" and q["verdict"] == "FAIL"
    assert q["vs_parent"]["all"]["f1"] < 0.99 and "detection F1" in q["reason"]
    assert rc == 1 and "FAIL at step onnx-int8: detection F1" in out


def test_verify_passes_fp32_without_any_framework(fp32, pack) -> None:
    """A fresh interpreter runs the CLI verify: torch/tensorflow/onnx never load."""
    code = ("import sys; from edgeinfer.cli import main\n"
            f"rc = main(['verify', {str(fp32)!r}, {str(pack)!r}, '--latency-runs', '3'])\n"
            "bad = {'torch', 'tensorflow', 'keras', 'onnx', 'litert_torch'} & set(sys.modules)\n"
            "print('LOADED', sorted(bad)); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "LOADED []" in r.stdout
    assert "PASS: onnx-fp32 detector on 72 frames, F1 1.0000" in r.stdout
    for aspect in ("portrait", "landscape", "square"):
        assert aspect in r.stdout


def _shifted(pack: Path, out: Path, dx: float) -> Path:
    p = read_pack(pack)
    p.detections = [(b + np.array([dx, 0, dx, 0]), s, c) for b, s, c in p.detections]
    return write_pack(p, out)


def test_verify_fails_boxes_shifted_by_2px(fp32, pack, work, capsys) -> None:
    rc, out, _ = _cli(capsys, "verify", fp32, _shifted(pack, work / "shift.pack", 2.0), "-q",
                      "--latency-runs", "3", "--json", work / "v.json")
    assert rc == 1 and out.startswith("FAIL") and "matched boxes differ by 2 px" in out
    assert json.loads((work / "v.json").read_text())["detections"]["all"]["f1"] == 1.0


def test_verify_fails_the_low_f1_int8(plain_int8, pack, capsys) -> None:
    rc, out, _ = _cli(capsys, "verify", plain_int8, pack, "-q", "--latency-runs", "3")
    assert rc == 1 and "FAIL: onnx-int8" in out and "detection F1 0.9" in out


def test_foreign_or_damaged_packs_are_one_line_exit_2(fp32, pack, work, capsys) -> None:
    other = read_pack(pack)
    other.labels = ("a", "b", "c", "d", "e")
    cases = [(write_pack(other, work / "other.pack"), "from another model")]
    cut = work / "cut.pack"
    cut.write_bytes(pack.read_bytes()[:100_000])
    cases.append((cut, "not an edgeinfer parity pack"))
    from edgeinfer.check.verify.pack import build_pack

    cls = write_pack(build_pack("fashion", "builtin:fashion-test", limit=8),
                     work / "fashion.pack")
    cases.append((cls, "holds a classifier's probabilities"))
    for p, match in cases:
        rc, out, err = _cli(capsys, "verify", fp32, p, "-q", "--latency-runs", "3")
        assert rc == 2 and match in err and len(err.strip().splitlines()) == 1, (p, err)


def test_verify_measures_the_preprocessing_on_the_device(fp32, pack, work, capsys) -> None:
    """The artifact's own prefix output vs this device's reference, as the gate's stage 1:
    about 0.003 grey levels for the real artifact; a colour bias moved by 0.02 (1.3 grey
    levels) fails it by name."""
    from onnx import numpy_helper

    rc, out, _ = _cli(capsys, "verify", fp32, pack, "--latency-runs", "3", "--json",
                      work / "ok.json")
    grey = json.loads((work / "ok.json").read_text())["preprocessing_grey_levels"]
    assert rc == 0 and grey is not None and grey <= tolerance("stage", "preprocessing").max_abs
    m = onnx.load(fp32)
    for i in m.graph.initializer:
        if i.name.startswith("edgeinfer_pre/color_b"):
            i.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(i) + 0.02, i.name))
    bad = work / "bias.onnx"
    onnx.save(m, bad)
    rc, out, _ = _cli(capsys, "verify", bad, pack, "-q", "--latency-runs", "3")
    assert rc == 1 and "preprocessing differs by 1.2" in out, out


def test_a_tflite_detector_checks_and_verifies(pack, work, capsys) -> None:
    """The .tflite detector (runtime NMS, host letterbox for frames of other sizes): check
    repeats the gate's figures, verify passes on the lean path with its preprocessing
    stage read through LiteRT (measured 1.5e-5 grey levels)."""
    tfl = convert_detector("fashion-detector", work / "det.tflite",
                           frames=parity_frames(per_aspect=8), progress=_quiet)[0]
    rc, out, _ = _cli(capsys, "check", "fashion-detector", tfl, "--data", DATA, "--limit",
                      "24", "-q")
    assert rc == 0 and "tflite-fp32" in out and "1.0000" in out, out
    rc, out, _ = _cli(capsys, "verify", tfl, pack, "--latency-runs", "3", "--json",
                      work / "t.json")
    v = json.loads((work / "t.json").read_text())
    assert rc == 0 and v["verdict"] == "PASS" and v["format"] == "tflite", out
    assert v["preprocessing_grey_levels"] <= tolerance("stage", "preprocessing").max_abs
    assert v["detections"]["all"]["max_box_error_px"] <= tolerance("detect_boxes").max_abs


def test_a_stretch_baked_where_the_framework_letterboxes_fails_check_and_verify(
        fp32, pack, work, capsys) -> None:
    """Issue 28's mistake (ultralytics #26269, D-FINE #358): an artifact converted with
    --fit stretch --accept-spec is judged against the framework's letterbox pipeline, not
    refused as 'another model' - measured F1 0.867, boxes 50 px off, preprocessing 255
    grey levels; square frames, where the two fits coincide, still agree."""
    st = convert_detector("fashion-detector", work / "stretch.onnx", fit="stretch",
                          accept_spec=True, frames=parity_frames(per_aspect=8),
                          progress=_quiet)[0]
    rc, out, err = _cli(capsys, "verify", st, pack, "-q", "--latency-runs", "3")
    assert rc == 1 and out.startswith("FAIL") and "preprocessing differs by" in out, out
    assert "fit: pack 'letterbox' vs artifact 'stretch'" in err
    rc, out, _ = _cli(capsys, "check", "fashion-detector", fp32, st, "--data", DATA,
                      "--limit", "24", "-q", "--json", work / "st.json")
    steps = {s["name"]: s for s in json.loads((work / "st.json").read_text())["steps"]}
    assert rc == 1 and steps["onnx-fp32"]["verdict"] in ("PASS", "NOT CERTIFIED")
    bad = steps["onnx-fp32#2"]
    assert bad["verdict"] == "FAIL" and bad["vs_parent"]["all"]["f1"] < 0.95
    assert bad["vs_parent"]["square"]["f1"] == 1.0
    assert "other preprocessing than fashion-detector's pipeline" in out
