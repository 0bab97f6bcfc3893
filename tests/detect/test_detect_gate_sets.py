"""The detection gate's model stage for set predictors (issue 28, helper H): RT-DETR orders
its queries by a top-k over encoder scores, so near-equal scores put query i of torch at
another place in onnxruntime's output (2 of 100 queries, 156 px apart, on 1 of 48 frames).
A detector that suppresses nothing (iou_threshold 1: DETR, RT-DETR, D-FINE) is compared as
a set - queries paired nearest first, those under the score threshold on both sides not
judged - and a dense per-anchor map (the bundled FCOS-style detector) element by element.

The outputs here are seeded draws shaped as RT-DETR's (100 queries x 80 classes, sigmoid
scores 0.01-0.23, as tools/hf_detector.py's random weights give): the comparison is what is
under test; the real RT-DETR conversion is tests/spec_from/test_detection_convert.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeinfer.converter.detect_gate import match_queries, set_predictions
from edgeinfer.detect_spec import DetectionSpec, NmsSpec
from edgeinfer.parity.tolerances import tolerance

ROOT = Path(__file__).resolve().parents[2]
FLOOR = 0.18  # tools/hf_detector.py's threshold
TB, TS = tolerance("detect_boxes", "fp32").max_abs, tolerance("detect_scores", "fp32").max_abs


def _queries(seed: int = 28, q: int = 100, c: int = 80) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, 280, (q, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(8, 40, (q, 2))], 1)
    return boxes, rng.uniform(0.01, 0.23, (q, c))


def _compare(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]
             ) -> tuple[float, float, int]:
    return match_queries(a[0], a[1], b[0], b[1], FLOOR, TB, TS)


def test_which_detectors_are_compared_as_sets() -> None:
    fashion = DetectionSpec.from_dict(json.loads(
        (ROOT / "models" / "fashion_detector" / "detection.json").read_text()))
    assert not set_predictions(fashion.nms)  # a dense map: element-wise, figures unchanged
    assert set_predictions(NmsSpec(iou_threshold=1.0, score_threshold=FLOOR))


def test_reordered_queries_agree_as_a_set() -> None:
    boxes, scores = _queries()
    order = np.random.default_rng(1).permutation(len(boxes))
    noisy = (boxes[order] + 1e-4, scores[order] + 1e-7)  # fp32 rounding-sized differences
    assert np.abs(noisy[0] - boxes).max() > 100  # element by element they are far apart
    box, score, ignored = _compare((boxes, scores), noisy)
    assert box <= 2e-4 and score <= 2e-7 and ignored == 0  # every query scores > 0.18


def test_a_query_swapped_at_the_top_k_boundary_under_the_floor_is_not_judged() -> None:
    boxes, scores = _queries()
    other_b, other_s = boxes.copy(), scores.copy()
    scores[7] = np.minimum(scores[7], 0.17)  # each side keeps an anchor the other dropped
    other_b[7] += 156.0
    other_s[7] = np.minimum(scores[7] - 0.01, 0.17)
    box, score, ignored = _compare((boxes, scores), (other_b, other_s))
    assert box == 0.0 and score == 0.0 and ignored == 1
    scores[7, 3] = 0.19  # the same swap where a detection could come of it: judged
    box, _, ignored = _compare((boxes, scores), (other_b, other_s))
    assert box >= 150 and ignored == 0


def test_a_real_difference_still_fails_the_set_comparison() -> None:
    boxes, scores = _queries()
    top = int(scores.max(1).argmax())
    shifted = boxes.copy()
    shifted[top] += 5.0  # one detection's box 5 px off, its score above the floor
    box, score, _ = _compare((boxes, scores), (shifted, scores))
    assert 4.9 <= box <= 5.0 + 1e-9 and box > TB and score == 0.0
    lower = scores.copy()
    lower[top] -= 0.01  # one query's scores off by 0.01
    _, score, _ = _compare((boxes, scores), (boxes, lower))
    assert abs(score - 0.01) < 1e-9 and score > TS


def test_info_says_when_the_model_stage_compared_a_set() -> None:
    from edgeinfer.converter.detect_gate import parity_line

    def line(comparison: str | None) -> str:
        stages = {"model_box_error_px": 1.2e-4} | (
            {} if comparison is None else {"model_comparison": comparison})
        return parity_line({"detections": {"all": {"frames": 72}}, "stages": stages,
                            "verdict": "PASS", "certification": "certified"})

    assert "model 0.00012 px (queries as a set)" in line("as a set (queries paired ...)")
    assert "(queries as a set)" not in line("element-wise (a dense per-cell/anchor map)")
    assert "(queries as a set)" not in line(None)  # artifacts from before the field
