"""The detection gate's pure judging functions where mutation testing found the tests blind
or absent (session 10, docs/mutation/detection.md): ``match_queries``' units, contention
and unequal counts, the floor's boundary; ``figure_failures`` (no fast test reached it),
the per-aspect aggregation and the counts certified; the stored verdict of a PASS."""

from __future__ import annotations

import numpy as np

from edgeinfer.converter.detect_frames import Frame
from edgeinfer.converter.detect_gate import (
    agreement,
    detections_vs,
    figure_failures,
    match_queries,
    set_predictions,
    verdict,
)
from edgeinfer.detect_spec import NmsSpec
from edgeinfer.parity.certify import PASS, DetectionAgreement, certify_detections
from edgeinfer.parity.tolerances import tolerance

TB, TS = tolerance("detect_boxes", "fp32").max_abs, tolerance("detect_scores", "fp32").max_abs
P = np.array([100.0, 100, 140, 150])


def _q(*rows: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Queries from (box shift in px, score): boxes P + shift, one class."""
    return (np.array([P + d for d, _ in rows]), np.array([[s] for _, s in rows]))


def _mq(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
        floor: float = 0.18) -> tuple[float, float, int]:
    return match_queries(a[0], a[1], b[0], b[1], floor, TB, TS)


def test_pairs_are_nearest_in_units_of_each_bound() -> None:
    """0.2 px is 0.4 of the box bound, 5e-5 is 0.5 of the score bound: the crossed pairs
    (0.2 px apart, same score) are nearer than the straight ones (same box, 5e-5 apart)."""
    box, score, _ = _mq(_q((0, 0.5), (0.2, 0.50005)), _q((0, 0.50005), (0.2, 0.5)))
    assert abs(box - 0.2) < 1e-12 and score == 0.0
    # and the other way round: 0.3 px is 0.6 of the box bound, 3e-5 is 0.3 of the score's
    box, score, _ = _mq(_q((0, 0.5), (0.3, 0.50003)), _q((0.3, 0.5), (0, 0.50003)))
    assert box == 0.0 and abs(score - 3e-5) < 1e-12


def test_a_taken_query_is_not_paired_again() -> None:
    """a1 is nearest to b0, which a0 (nearer still) took first: a1 pairs with the far b1
    (99.7 px), which must show as the box error, not as a pair re-used or a matching
    stopped early (either would leave b1 alone: an infinite error)."""
    box, score, ignored = _mq(_q((0, 0.5), (0.3, 0.5)), _q((0.1, 0.5), (100, 0.5)))
    assert abs(box - 99.7) < 1e-9 and score == 0.0 and ignored == 0


def test_unequal_counts_judge_the_leftover_by_the_floor() -> None:
    a = _q((0, 0.5), (50, 0.3))
    # the leftover b query scores under the floor (or exactly at it): not a detection
    for left in (0.1, 0.18):
        box, score, ignored = _mq(a, _q((0, 0.5), (50, 0.3), (80, left)))
        assert (box, score, ignored) == (0.0, 0.0, 0)
        box, score, ignored = _mq(_q((0, 0.5), (50, 0.3), (80, left)), a)  # on either side
        assert (box, score, ignored) == (0.0, 0.0, 0)
    # above it: a detection one side has and the other lacks
    assert _mq(a, _q((0, 0.5), (50, 0.3), (80, 0.19)))[:2] == (float("inf"), float("inf"))


def test_pairs_at_or_under_the_floor_on_both_sides_are_counted_not_judged() -> None:
    box, score, ignored = _mq(_q((0, 0.5), (5, 0.18), (9, 0.1)),
                              _q((0, 0.5), (6, 0.17), (9, 0.18)))
    assert (box, score, ignored) == (0.0, 0.0, 2)


def test_which_nms_makes_a_set_predictor() -> None:
    assert not set_predictions(object())  # no NMS settings: a dense map
    assert not set_predictions(NmsSpec(iou_threshold=0.99, score_threshold=0.2))
    assert set_predictions(NmsSpec(iou_threshold=1.0, score_threshold=0.2))


def test_figure_failures_say_each_figure_against_its_bound() -> None:
    # fp32's measured errors (docs/detection/own_detector.md: 1e-4 px) and the bounds
    assert figure_failures({"max_box_error_px": 1e-4, "max_score_error": 7e-6}) == []
    assert figure_failures({"max_box_error_px": 0.5, "max_score_error": 1e-4}) == []
    # a pixel off (half a wrong letterbox row), a score off by 1e-3: both named
    assert figure_failures({"max_box_error_px": 1.0, "max_score_error": 1e-3}) == [
        "matched boxes differ by 1 px in the frame (bound 0.5)",
        "matched scores differ by 0.001 (bound 0.0001)"]
    nan = float("nan")
    assert len(figure_failures({"max_box_error_px": nan, "max_score_error": nan})) == 2
    # int8 is judged by F1 alone: any box or score movement passes the figures
    assert figure_failures({"max_box_error_px": 30.0, "max_score_error": 0.2}, "int8") == []


def _frame(aspect: str, n: int) -> Frame:
    boxes = np.array([[10.0 * i, 10, 10.0 * i + 8, 30] for i in range(n)])
    return Frame(np.full((4, 4, 3), n, np.uint8), boxes, np.zeros(n, np.int64), aspect)


def test_detections_are_aggregated_per_aspect_and_over_all_frames() -> None:
    """Two portrait frames and a square one; the candidate misses a box on one portrait
    frame and is 0.25 px and 0.01 off on the square one."""
    frames = [_frame("portrait", 3), _frame("portrait", 2), _frame("square", 4)]
    lone = _frame("landscape", 1)
    truth = {int(f.image[0, 0, 0]): f for f in [*frames, lone]}

    def reference(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        f = truth[int(image[0, 0, 0])]
        return f.boxes, np.full(len(f.boxes), 0.9), f.classes

    def candidate(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        b, s, c = reference(image)
        if len(b) == 3:
            return b[:2], s[:2], c[:2]
        if len(b) == 4:
            return b + [0.25, 0, 0, 0], s - 0.01, c
        if len(b) == 1:  # a box the framework does not find
            return np.concatenate([b, [[90.0, 90, 99, 99]]]), np.r_[s, 0.5], np.r_[c, 0]
        return b, s, c

    out = detections_vs(candidate, reference, frames)
    assert set(out) == {"portrait", "square", "all"}
    assert out["portrait"] == {"frames": 2, "matched": 4, "only_artifact": 0,
                               "only_framework": 1, "f1": 8 / 9, "max_box_error_px": 0.0,
                               "max_score_error": 0.0}
    sq = out["square"]
    assert (sq["frames"], sq["matched"], sq["f1"], sq["max_box_error_px"]) == (1, 4, 1.0, 0.25)
    assert abs(sq["max_score_error"] - 0.01) < 1e-12
    a = out["all"]
    assert (a["frames"], a["matched"], a["only_artifact"], a["only_framework"]) == (3, 8, 0, 1)
    assert a["f1"] == 16 / 17 and a["max_box_error_px"] == 0.25
    assert agreement(a) == DetectionAgreement(8, 0, 1, 3)
    assert detections_vs(candidate, reference, []) == {}
    land = detections_vs(candidate, reference, [lone])["landscape"]
    assert (land["matched"], land["only_artifact"], land["only_framework"]) == (1, 1, 0)
    assert land["f1"] == 2 / 3


def test_nothing_detected_aggregates_to_f1_one_and_zero_errors() -> None:
    out = detections_vs(lambda im: (np.zeros((0, 4)), np.zeros(0), np.zeros(0)),
                        lambda im: (np.zeros((0, 4)), np.zeros(0), np.zeros(0)),
                        [_frame("", 0)])
    assert out["frame"] == out["all"] == {
        "frames": 1, "matched": 0, "only_artifact": 0, "only_framework": 0, "f1": 1.0,
        "max_box_error_px": 0.0, "max_score_error": 0.0}


def test_a_pass_is_stored_as_certified() -> None:
    v = verdict(certify_detections(DetectionAgreement(191, 0, 0, 63), 1.0))
    assert v == {"passed": True, "verdict": PASS, "certified": True,
                 "certification": "certified", "failures": []}
