"""The detector graph's ending (converter/detect_graph.py) against the lean runtime's own
steps: ONNX NonMaxSuppression + TopK + the in-graph inverse letterbox must give the boxes
that runtime/detect/nms.py + geometry.fit(...).to_frame give, on frames of every aspect
(the two NMS placements of a detector artifact are interchangeable only if they agree).

Boxes are clustered (up to ~10 overlapping boxes per object, 5 classes), so suppression
decides; the frame is only read for its size by the graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgeinfer.converter.detect_graph import add_postprocess
from edgeinfer.detect_spec import DetectionSpec, NmsSpec
from edgeinfer.runtime.detect.geometry import fit
from edgeinfer.runtime.detect.nms import nms

SIZE = (160, 160)
DET = DetectionSpec(fit="letterbox", nms=NmsSpec(iou_threshold=0.5, score_threshold=0.3,
                                                 top_k=100))


def _ending(nms_place: str, det: DetectionSpec = DET) -> ort.InferenceSession:
    """A stand-in core (its outputs are its inputs) with the detector ending appended."""
    g = helper.make_graph(
        [helper.make_node("Identity", ["b_in"], ["b_out"]),
         helper.make_node("Identity", ["s_in"], ["s_out"])], "core",
        [helper.make_tensor_value_info("frame", TensorProto.UINT8, [1, "h", "w", 3]),
         helper.make_tensor_value_info("b_in", TensorProto.FLOAT, [1, "a", 4]),
         helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [1, "a", 5])],
        [helper.make_tensor_value_info("b_out", TensorProto.FLOAT, [1, "a", 4]),
         helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [1, "a", 5])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    m.ir_version = 10
    m = add_postprocess(m, det, SIZE, nms_place)
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def _clusters(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.uniform(10, 150, (12, 2))
    boxes, scores = [], []
    for c in centres:
        for _ in range(int(rng.integers(1, 10))):
            half = rng.uniform(5, 30, 2)
            jitter = rng.normal(0, 3, 2)
            boxes.append(np.r_[c + jitter - half, c + jitter + half])
            s = np.zeros(5, np.float32)
            s[rng.integers(0, 5)] = rng.uniform(0.05, 1.0)
            s[rng.integers(0, 5)] += rng.uniform(0.0, 0.5)
            scores.append(np.clip(s, 0, 1))
    return np.asarray(boxes, np.float32)[None], np.asarray(scores, np.float32)[None]


@pytest.mark.parametrize("hw", [(333, 250), (250, 333), (200, 200), (101, 397), (640, 48)])
def test_graph_nms_and_inverse_letterbox_equal_the_runtime(hw: tuple[int, int]) -> None:
    sess = _ending("graph")
    frame = np.zeros((1, *hw, 3), np.uint8)
    rng = np.random.default_rng(hw[0] * 1000 + hw[1])
    for _ in range(5):
        b, s = _clusters(rng)
        gb, gs, gc = sess.run(["boxes", "scores", "classes"],
                              {"frame": frame, "b_in": b, "s_in": s})
        cls, anchor = np.nonzero(DET.nms.score_threshold < s[0].T)  # class-major: ties
        cand = s[0][anchor, cls]
        kept = nms(b[0][anchor], cand, cls, iou_threshold=DET.nms.iou_threshold,
                   score_threshold=DET.nms.score_threshold, top_k=DET.nms.top_k)
        rb = fit(hw, SIZE, "letterbox").to_frame(b[0][anchor[kept]])
        assert len(kept) > 3  # suppression had something to decide
        np.testing.assert_array_equal(gc, cls[kept])
        np.testing.assert_array_equal(gs, cand[kept])
        # float32 in the graph vs float64 in the runtime: far below a pixel
        np.testing.assert_allclose(gb, rb, atol=2e-3, rtol=0)


def test_runtime_ending_hands_over_the_core_outputs() -> None:
    sess = _ending("runtime")
    assert [o.name for o in sess.get_outputs()] == ["boxes", "scores"]
    b, s = _clusters(np.random.default_rng(0))
    ob, os_ = sess.run(None, {"frame": np.zeros((1, 90, 70, 3), np.uint8), "b_in": b,
                              "s_in": s})
    np.testing.assert_array_equal(ob, b)
    np.testing.assert_array_equal(os_, s)


def test_top_k_bounds_the_kept_boxes_over_all_classes() -> None:
    det = DetectionSpec(fit="letterbox", nms=NmsSpec(score_threshold=0.05, top_k=3))
    sess = _ending("graph", det)
    b, s = _clusters(np.random.default_rng(7))
    gb, gs, _ = sess.run(["boxes", "scores", "classes"],
                         {"frame": np.zeros((1, 160, 160, 3), np.uint8), "b_in": b, "s_in": s})
    assert gb.shape == (3, 4) and np.all(np.diff(gs) <= 0)


def test_ending_refuses_a_fit_it_cannot_invert() -> None:
    m = onnx.ModelProto()
    with pytest.raises(ValueError, match="letterbox or a stretch"):
        add_postprocess(m, DetectionSpec(fit="pad_resize"), SIZE)


@pytest.mark.parametrize("hw", [(333, 250), (250, 333), (101, 397)])
def test_graph_inverse_stretch_equals_the_runtime(hw: tuple[int, int]) -> None:
    """A stretch (transformers RT-DETR's fit, spec_from.derive_detection): each axis by
    its own ratio, no padding, as geometry.fit(..., "stretch").to_frame (refused before)."""
    det = DetectionSpec(fit="stretch", nms=DET.nms)
    sess = _ending("graph", det)
    b, s = _clusters(np.random.default_rng(hw[1]))
    gb, gs, gc = sess.run(["boxes", "scores", "classes"],
                          {"frame": np.zeros((1, *hw, 3), np.uint8), "b_in": b, "s_in": s})
    cls, anchor = np.nonzero(DET.nms.score_threshold < s[0].T)
    cand = s[0][anchor, cls]
    kept = nms(b[0][anchor], cand, cls, iou_threshold=DET.nms.iou_threshold,
               score_threshold=DET.nms.score_threshold, top_k=DET.nms.top_k)
    np.testing.assert_array_equal(gc, cls[kept])
    np.testing.assert_allclose(gb, fit(hw, SIZE, "stretch").to_frame(b[0][anchor[kept]]),
                               atol=2e-3, rtol=0)


@pytest.mark.parametrize("output, kw, match", [
    ("det.pt", {}, "ONNX or TFLite"),
    ("det.onnx", {"format": "tflite"}, "ONNX or TFLite"),
    ("det.onnx", {"frame_size": (480, 640)}, "frame-size"),
    ("det.onnx", {"quantize": "fp16"}, "fp32 or int8"),
    ("det.onnx", {"nms": "both"}, "nms must be one of"),
    # issue 28 G: a latency budget is int8's (before: ignored, an fp32 written)
    ("det.onnx", {"max_latency_ratio": 0.8}, "with --quantize int8"),
])
def test_detector_conversion_refuses_what_it_cannot_build(tmp_path, output, kw, match) -> None:
    """Bad requests are one typed error before any export (the CLI prints one line, exit 2)."""
    from edgeinfer.converter.detect_convert import convert_detector
    from edgeinfer.errors import ConfigError

    with pytest.raises(ConfigError, match=match):
        convert_detector("fashion-detector", tmp_path / output, **kw)
    assert not (tmp_path / output).exists()
