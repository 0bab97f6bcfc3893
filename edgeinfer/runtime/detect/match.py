"""Detections against detections: the matching for boxes (issue 28).

Floor 2 (runtime) so that both judging rooms use one matching: the parity gate
(:mod:`edgeinfer.parity.boxes` re-exports it) and the diagnosis engine, which scores a
detector's preprocessing hypotheses against true boxes (:mod:`edgeinfer.diagnose.
detect_culprits`) and may not import ``parity``.

Two detectors' outputs on one frame (the artifact's and the framework's) are matched
greedily, best score first, within a class, at IoU >= ``min_iou`` (0.5, the COCO
convention for "the same object"). From the matches: detection F1 (an unmatched box on
either side counts against it), the largest box-corner error in pixels and the largest score
error. Pure numpy, like the classification comparison in :mod:`edgeinfer.parity.stats`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeinfer.runtime.detect.nms import iou


@dataclass(frozen=True)
class BoxComparison:
    matched: int
    only_a: int
    only_b: int
    max_box_error_px: float
    max_score_error: float

    @property
    def f1(self) -> float:
        """2 * matched / (boxes in a + boxes in b); 1.0 when both found nothing."""
        total = 2 * self.matched + self.only_a + self.only_b
        return 1.0 if total == 0 else 2 * self.matched / total


def compare_boxes(a_boxes: np.ndarray, a_scores: np.ndarray, a_classes: np.ndarray,
                  b_boxes: np.ndarray, b_scores: np.ndarray, b_classes: np.ndarray,
                  min_iou: float = 0.5) -> BoxComparison:
    """Match ``a`` to ``b`` (each ``[N, 4]`` xyxy, ``[N]`` scores, ``[N]`` classes)."""
    a_boxes = np.asarray(a_boxes, np.float64).reshape(-1, 4)
    b_boxes = np.asarray(b_boxes, np.float64).reshape(-1, 4)
    a_scores, b_scores = np.asarray(a_scores, np.float64), np.asarray(b_scores, np.float64)
    a_classes, b_classes = np.asarray(a_classes), np.asarray(b_classes)
    free = np.ones(len(b_boxes), bool)
    box_err, score_err, matched = 0.0, 0.0, 0
    for i in np.argsort(-a_scores, kind="stable"):
        cand = np.flatnonzero(free & (b_classes == a_classes[i]))
        if not len(cand):
            continue
        overlaps = iou(a_boxes[i], b_boxes[cand])
        j = int(np.argmax(overlaps))
        if overlaps[j] < min_iou:
            continue
        k = cand[j]
        free[k] = False
        matched += 1
        box_err = max(box_err, float(np.abs(a_boxes[i] - b_boxes[k]).max()))
        score_err = max(score_err, abs(float(a_scores[i] - b_scores[k])))
    return BoxComparison(matched, len(a_boxes) - matched, int(free.sum()), box_err, score_err)
