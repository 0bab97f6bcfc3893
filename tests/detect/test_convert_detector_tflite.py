"""The bundled detector as a TFLite artifact (issue 28): the ONNX detector's contract and
gate through litert-torch - real photos of every aspect, the `frame` signature at its fixed
size and the host letterbox + `resized` for every other size, NMS and the inverse in the
lean runtime; served by open_detector / predict; a wrong prefix refused by the gate.

Before this file's code, `convert fashion-detector -o det.tflite` was refused ("a detector
converts to ONNX so far") and ArtifactDetector could not open a .tflite."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import cv2
import pytest

from edgeinfer.converter.detect_convert import convert_detector, load_detector, metadata
from edgeinfer.converter.detect_frames import GATE_PER_ASPECT, gate_frames
from edgeinfer.converter.detect_gate import detection_gate, detections_vs
from edgeinfer.parity.boxes import compare_boxes
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector
from edgeinfer.runtime.detect.loader import open_detector

pytestmark = pytest.mark.slow

FIXED = (480, 640)


@pytest.fixture(scope="module")
def frames():
    return gate_frames()  # what convert gates on by default


@pytest.fixture(scope="module")
def converted(tmp_path_factory, frames):
    out = tmp_path_factory.mktemp("dett") / "fashion_detector.tflite"
    return convert_detector("fashion-detector", out)  # the default gate frames


def test_tflite_gate_figures_by_aspect(converted, frames) -> None:
    path, meta = converted
    assert path.read_bytes()[4:8] == b"TFL3"
    par, prov = meta.parity, meta.provenance
    assert meta.task == "detect" and prov["format"] == "tflite"
    assert prov["frame_size"] == list(FIXED) and par["nms"] == "runtime"
    # both signatures judged: some parity frames have the fixed size, most do not
    sizes = [f.image.shape[:2] for f in frames]
    assert 0 < sizes.count(FIXED) < len(frames)
    tb, ts = tolerance("detect_boxes"), tolerance("detect_scores")
    assert par["passed"], par["failures"]
    assert par["stages"]["preprocessing_grey_levels"] <= tolerance(
        "stage", "preprocessing").max_abs
    assert par["stages"]["model_box_error_px"] <= tb.max_abs
    assert par["stages"]["model_score_error"] <= ts.max_abs
    for aspect in ("portrait", "landscape", "square"):
        r = par["detections"][aspect]
        assert r["frames"] == GATE_PER_ASPECT and r["matched"] >= 25, r
        assert r["f1"] == 1.0 and r["max_box_error_px"] <= tb.max_abs, r
        assert r["max_score_error"] <= ts.max_abs, r


def test_tflite_served_as_it_deploys(converted, frames) -> None:
    """open_detector serves the .tflite; a frame of the fixed size (the `frame` signature,
    letterbox in the graph) and frames of other sizes (host letterbox) both match torch."""
    path, _ = converted
    det = open_detector(path, threads=1)
    assert isinstance(det, ArtifactDetector) and not det.nms_in_graph
    assert det.describe()["format"] == "tflite"
    src = load_detector("fashion-detector")
    fixed = [f for f in frames if f.image.shape[:2] == FIXED]
    other = [f for f in frames if f.image.shape[:2] != FIXED][:6]
    for f in fixed + other:
        c = compare_boxes(*det.arrays(f.image), *src.framework(f.image))
        assert c.f1 == 1.0 and c.max_box_error_px <= 0.5, (f.image.shape, c)
    found = det(fixed[0].image)
    assert found and found[0].label in src.labels


def test_predict_and_info_read_the_tflite_detector(converted, frames, tmp_path) -> None:
    path, _ = converted
    img = tmp_path / "frame.png"
    cv2.imwrite(str(img), frames[0].image)
    out = subprocess.run([sys.executable, "-m", "edgeinfer", "predict", str(path), str(img),
                          "--json"], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    want = open_detector(path)(frames[0].image)
    assert len(rows) == 1 and len(rows[0]["detections"]) == len(want) > 0
    info = subprocess.run([sys.executable, "-m", "edgeinfer", "info", str(path)],
                          capture_output=True, text=True, timeout=180)
    assert info.returncode == 0, info.stderr
    assert "format:     tflite fp32" in info.stdout
    assert "task:       detect (fit letterbox" in info.stdout
    # the certification's word: 48 frames (146 matched boxes) said NOT CERTIFIED; the
    # default gate's 72 frames certify F1 >= 0.99 (issue 28 finding 1)
    line = next(x for x in info.stdout.splitlines() if x.startswith("parity:"))
    assert line.startswith("parity:     PASS on 72 frames") and "NMS in the runtime" in line


def test_tflite_gate_refuses_a_wrong_prefix(frames) -> None:
    """The stages are read from the interpreter, not assumed: a .tflite whose baked prefix
    swaps the colour order (metadata still saying BGR) is refused by the gate."""
    from edgeinfer.converter.detect_tflite import build_tflite
    from edgeinfer.converter.export.tflite_metadata import embed_metadata

    src = load_detector("fashion-detector")
    wrong = dataclasses.replace(src.spec, frame_color="RGB")
    bare = build_tflite(src.module, wrong, FIXED, lambda _m: None)
    blob = embed_metadata(bare, metadata(src, {"format": "tflite"}, {}).to_props())
    sub = frames[::4]
    report = detection_gate(blob, src, sub, lambda _m: None)
    assert not report["passed"]
    assert any("preprocessing differs" in f for f in report["failures"]), report["failures"]
    right = detections_vs(ArtifactDetector(blob).arrays, src.framework, sub)["all"]
    assert right["matched"] > 0  # it still detects: only the stage figures show the swap


def test_tflite_int8_controlled_on_f1(tmp_path, converted, frames) -> None:
    """``--quantize int8`` on a TFLite detector: ai_edge_quantizer's full-integer int8
    under the accuracy control on detection F1 vs the fp32 .tflite (gate frames and tune
    frames), fewer than every layer float; served as the fp32 one is.
    Issue 28 G: an int8 slower than 0.9x fp32 is refused by default - on the 72-frame gate
    this one needs 10 of 16 layers float at 0.93x (measured; 1 of 16 on 48 frames) - and
    written under the user's --max-latency-ratio."""
    from edgeinfer.converter.detect_control import FASTER
    from edgeinfer.errors import ParityError

    try:  # the rule, whichever side of 0.9x this load measures it
        _, m = convert_detector("fashion-detector", tmp_path / "d.tflite", quantize="int8",
                                frames=frames)
        assert m.provenance["detect_int8_control"]["steps"][-1]["latency_ratio"] <= FASTER
    except ParityError as e:
        assert "\n" not in str(e) and "x fp32's 1-thread latency (not faster" in str(e)
        assert not (tmp_path / "d.tflite").exists()
    # 1.5, not 1.0: the cap follows the measured latency, and a clean-clone run at full load
    # (seed 471846435) fitted 14 of 16 float within 1.0x, where the two layers ranked last
    # still miss F1 0.99 (refused, rightly for that budget); at idle 16 fit and 10 meet it
    path, meta = convert_detector("fashion-detector", tmp_path / "q.tflite", quantize="int8",
                                  frames=frames, max_latency_ratio=1.5)
    bar = tolerance("detect_boxes", "int8").min_top1
    got = meta.parity["int8"]["vs_fp32"]["all"]
    ctl = meta.provenance["detect_int8_control"]
    assert meta.provenance["format"] == "tflite" and meta.provenance["quantize"] == "int8"
    assert got["f1"] >= bar and got["matched"] >= 120, got
    assert len(ctl["kept_float"]) < ctl["candidates"], ctl["kept_float"]
    final = ctl["steps"][-1]
    assert final["meets"] and min(final["f1_by_set"].values()) >= bar
    assert final["latency_ratio"] <= 1.5 and ctl["max_latency_ratio"] == 1.5
    assert path.stat().st_size < converted[0].stat().st_size
    det = open_detector(path, threads=1)
    fixed = next(f for f in frames if f.image.shape[:2] == FIXED)
    c = compare_boxes(*det.arrays(fixed.image), *ArtifactDetector(converted[0]).arrays(
        fixed.image))
    assert c.matched > 0
    info = subprocess.run([sys.executable, "-m", "edgeinfer", "info", str(path)],
                          capture_output=True, text=True, timeout=180)
    # it said "every conv/matmul layer int8" before info read the detector's control record
    k = len(ctl["kept_float"])
    assert f"format:     tflite int8, {k} of 16 conv/matmul layers float" in info.stdout


def test_tflite_detector_served_over_oip(converted, frames) -> None:
    """`edgeinfer serve det.tflite`: a tritonclient round trip on real frames (one of the
    fixed size, others through the host letterbox) equals the in-process detector."""
    import tritonclient.http as triton

    from edgeinfer.serve.config import ServeConfig
    from edgeinfer.serve.server import serve_in_thread
    from tests.serve.conftest import assert_oip_detections

    path, _ = converted
    det = ArtifactDetector(path, threads=1)
    pick = [next(f for f in frames if f.image.shape[:2] == FIXED)] + list(frames[:3])
    with serve_in_thread([path], ServeConfig(port=0, threads=1)) as url:
        c = triton.InferenceServerClient(url.removeprefix("http://"))
        meta = c.get_model_metadata("fashion_detector")
        assert [o["name"] for o in meta["outputs"]] == ["boxes", "scores", "classes"]
        found = assert_oip_detections(c, "fashion_detector", det, [f.image for f in pick])
    assert found >= len(pick)
