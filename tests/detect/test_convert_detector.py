"""The bundled detector (models/fashion_detector) converted end to end (issue 28): the
artifact's detections on real photos of every aspect equal the torch pipeline's, stage by
stage; the two NMS placements agree; int8 is judged on F1 vs fp32; `info` names the task;
a wrong fit (stretch instead of letterbox) and a wrong inverse are caught.

The frames: the six bundled photos cropped to portrait 3:4, landscape 4:3 and square,
240 to 640 pixels, with Fashion-MNIST *test* items pasted (detect_frames.parity_frames)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.converter.detect_convert import convert_detector, load_detector
from edgeinfer.converter.detect_frames import GATE_PER_ASPECT, gate_frames
from edgeinfer.converter.detect_gate import detection_gate, detections_vs
from edgeinfer.detect_spec import DetectionSpec
from edgeinfer.errors import ParityError
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector
from edgeinfer.runtime.detect.nms import iou

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def frames():
    return gate_frames()  # what convert gates on by default


@pytest.fixture(scope="module")
def converted(tmp_path_factory, frames):
    out = tmp_path_factory.mktemp("det") / "fashion_detector.onnx"
    return convert_detector("fashion-detector", out)  # the default gate frames


def test_fp32_gate_figures_by_aspect(converted) -> None:
    _, meta = converted
    par = meta.parity
    assert meta.task == "detect" and meta.detection.fit == "letterbox"
    assert par["passed"] and par["nms"] == "graph"
    tb, ts = tolerance("detect_boxes"), tolerance("detect_scores")
    assert par["stages"]["preprocessing_grey_levels"] <= tolerance("stage",
                                                                   "preprocessing").max_abs
    assert par["stages"]["model_box_error_px"] <= tb.max_abs
    assert par["stages"]["model_score_error"] <= ts.max_abs
    for aspect in ("portrait", "landscape", "square"):
        r = par["detections"][aspect]
        assert r["frames"] == GATE_PER_ASPECT
        assert r["matched"] >= 25, r  # F1 1.0 over boxes found, not over empty frames
        assert r["f1"] == 1.0 and r["max_box_error_px"] <= tb.max_abs
        assert r["max_score_error"] <= ts.max_abs


def test_artifact_finds_the_pasted_objects(converted, frames) -> None:
    """The detector is a detector: against the true boxes, not only against torch."""
    det = ArtifactDetector(converted[0])
    tp = n_det = n_true = 0
    for f in frames:
        boxes, _, classes = det.arrays(f.image)
        n_det, n_true = n_det + len(boxes), n_true + len(f.boxes)
        used = np.zeros(len(f.boxes), bool)
        for b, c in zip(boxes, classes, strict=True):
            cand = np.flatnonzero(~used & (f.classes == c))
            if len(cand) and (o := iou(b, f.boxes[cand])).max() >= 0.5:
                used[cand[int(np.argmax(o))]] = True
                tp += 1
    precision, recall = tp / n_det, tp / n_true
    # measured 0.66 and 0.69 (docs/detection/own_detector.md): a small detector, but one
    assert precision > 0.55 and recall > 0.6, (precision, recall)


def test_runtime_nms_equals_graph_nms(tmp_path, converted, frames) -> None:
    path, meta = convert_detector("fashion-detector", tmp_path / "rt.onnx", nms="runtime",
                                  frames=frames)
    assert meta.parity["passed"] and meta.parity["nms"] == "runtime"
    graph, runtime = ArtifactDetector(converted[0]), ArtifactDetector(path)
    assert graph.nms_in_graph and not runtime.nms_in_graph
    r = detections_vs(runtime.arrays, graph.arrays, frames)["all"]
    assert r["f1"] == 1.0 and r["max_box_error_px"] < 1e-2 and r["max_score_error"] == 0.0
    shown = graph(frames[0].image)
    assert shown and shown[0].label in meta.labels and shown[0].to_dict()["box"]


def test_wrong_fit_is_refused(converted, frames) -> None:
    """A frame stretched to the input (the D-FINE #358 mix-up) loses detections on
    portrait and landscape frames; a square frame is unaffected (stretch = letterbox)."""
    det, src = ArtifactDetector(converted[0]), load_detector("fashion-detector")

    def stretched(frame: np.ndarray):
        h, w = frame.shape[:2]
        b, s, c = det.arrays(cv2.resize(frame, (160, 160), interpolation=cv2.INTER_LINEAR))
        return b * [w / 160, h / 160, w / 160, h / 160], s, c

    r = detections_vs(stretched, src.framework, frames)
    bound = tolerance("detect_boxes")
    for aspect in ("portrait", "landscape"):
        assert r[aspect]["f1"] < bound.min_top1 or r[aspect]["max_box_error_px"] > \
            bound.max_abs, r[aspect]
    assert r["all"]["f1"] < 0.95, r["all"]


def test_gate_refuses_a_wrong_inverse(converted, frames) -> None:
    """A framework that maps boxes back by the stretch's inverse (the letterbox used to
    place the frame) disagrees with the artifact: the gate names it."""
    src = load_detector("fashion-detector")
    wrong = dataclasses.replace(src, detection=DetectionSpec(
        fit="stretch", decoder=src.detection.decoder, nms=src.detection.nms))
    report = detection_gate(Path(converted[0]).read_bytes(), wrong, frames, lambda _m: None)
    assert not report["passed"]
    assert any("matched boxes differ" in f or "F1" in f for f in report["failures"])


def test_int8_judged_on_f1_vs_fp32(tmp_path, converted, frames) -> None:
    """Plain int8 (Conv-only QDQ, heads float, 256 calibration frames) misses the bar:
    measured F1 0.9898 vs fp32 (145 matched, 3 unmatched of 148) - the gate's verdict
    follows the bound. ``convert --quantize int8`` runs the accuracy control on F1
    (detect_control) and writes an int8 that meets it on the gate's frames and on the
    independent tune frames, with fewer than every layer float (before the control,
    convert refused this detector)."""
    import onnx

    from edgeinfer.converter.detect_frames import calibration_frames
    from edgeinfer.converter.detect_gate import int8_gate
    from edgeinfer.converter.detect_int8 import quantize_detector

    fp32 = Path(converted[0]).read_bytes()
    q = quantize_detector(onnx.load_from_string(fp32), calibration_frames(), lambda _m: None)
    verdict = int8_gate(q.SerializeToString(), fp32, load_detector("fashion-detector"),
                        frames, lambda _m: None)
    a = verdict["vs_fp32"]["all"]
    bar = tolerance("detect_boxes", "int8").min_top1
    assert a["matched"] >= 120 and a["f1"] >= 0.97, a
    assert verdict["passed"] == (a["f1"] >= bar)
    # issue 28 finding 2: the controlled ONNX int8 needs 11 of 16 layers float (72 gate
    # frames; 13 of 16 on 48) and is then no faster than fp32 (0.98x; 1.02x before):
    # refused by default in one line naming the figures (before: written)
    with pytest.raises(ParityError, match=r"of 16 layers float, at [0-9.]+x fp32's "
                       r"1-thread latency \(not faster.*TFLite int8") as e:
        convert_detector("fashion-detector", tmp_path / "q.onnx", quantize="int8",
                         frames=frames)
    assert "\n" not in str(e.value) and not (tmp_path / "q.onnx").exists()
    # with the user's budget the same int8 is written, its ratio recorded
    path, meta = convert_detector("fashion-detector", tmp_path / "q.onnx", quantize="int8",
                                  frames=frames, max_latency_ratio=1.5)
    got = meta.parity["int8"]["vs_fp32"]["all"]
    ctl = meta.provenance["detect_int8_control"]
    assert got["f1"] >= bar and got["matched"] >= 120, got
    assert 0 < len(ctl["kept_float"]) < ctl["candidates"], ctl["kept_float"]
    final = ctl["steps"][-1]
    assert final["meets"] and min(final["f1_by_set"].values()) >= bar
    assert set(final["f1_by_set"]) == {"gate", "tune"}
    assert ctl["max_latency_ratio"] == 1.5 and 0 < final["latency_ratio"] <= 1.5
    # 11 of 16 layers float (measured): smaller than fp32 all the same (1.10 vs 1.22 MB)
    assert path.stat().st_size < Path(converted[0]).stat().st_size
    assert ArtifactDetector(path)(frames[0].image)


def test_info_names_the_task(converted) -> None:
    out = subprocess.run([sys.executable, "-m", "edgeinfer", "info", str(converted[0])],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "task:       detect (fit letterbox, boxes xyxy, NMS per class IoU 0.5" in out.stdout
    # issue 28 finding 1: 48 frames (146 matched boxes) said NOT CERTIFIED - F1 >= 0.99 on
    # the 95% bound needs 191; the default gate's 72 frames certify it
    line = next(x for x in out.stdout.splitlines() if x.startswith("parity:"))
    assert line.startswith("parity:     PASS on 72 frames (") and "24 portrait" in line, line
    assert "monitor:    not for detectors yet" in out.stdout


def test_bench_times_frame_to_boxes_against_the_torch_pipeline(converted, tmp_path,
                                                               capsys) -> None:
    """``edgeinfer bench det.onnx`` (issue 28 point 4): the artifact frame -> boxes against
    the torch module it came from (letterbox, module, its own NMS, inverse), on one real
    frame per aspect, after checking they agree (before: no framework case, a note)."""
    from edgeinfer.cli import main

    out = tmp_path / "bench.json"
    assert main(["bench", str(converted[0]), "--threads", "1", "--runs", "6", "--warmup",
                 "1", "--rounds", "2", "--json", str(out), "-q"]) == 0
    table = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["notes"] == [], report["notes"]
    assert [r["frame"].split()[0] for r in report["results"]] == ["portrait", "landscape",
                                                                   "square"]
    for r in report["results"]:
        assert set(r["latency_ms"]) == {"edgeinfer.e2e", "torch.e2e"}, r
        assert r["reference"] == "torch" and r["detections"] > 0
        assert r["agreement"]["f1"] == 1.0 and r["agreement"]["max_box_error_px"] <= 0.5
        assert r["speedup_p50"] == pytest.approx(
            r["latency_ms"]["torch.e2e"]["p50"] / r["latency_ms"]["edgeinfer.e2e"]["p50"])
    assert "framework p50" in table and "flags" in table
