"""compare_boxes where mutation testing found the tests blind (session 10,
docs/mutation/detection.md): the float64 casts and the stable greedy order are part of the
contract, not decoration.

- A half-precision pipeline (a torch model run in ``.half()``, a float16 output) gives
  float16 boxes: a 600 x 600 px box's area overflows float16 (max 65504), its IoU with
  itself becomes NaN, and nothing would match without the cast.
- A quantised detector's raw scores are uint8: negating them for the greedy order
  wraps (-200 is 56).
- Tied scores (quantised detectors tie often) are matched in the detector's own order,
  so the figures do not depend on numpy's unstable sort (which reorders ties once an
  array is longer than its insertion-sort cut-off).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.parity.boxes import compare_boxes


def test_float16_boxes_match_themselves() -> None:
    boxes = np.array([[10, 20, 610, 620], [0, 0, 300, 300]], np.float16)
    r = compare_boxes(boxes, [0.9, 0.8], [0, 0], boxes, [0.9, 0.8], [0, 0])
    assert (r.matched, r.only_a, r.only_b) == (2, 0, 0) and r.max_box_error_px == 0.0


@pytest.mark.parametrize("side", ["a", "b"])
def test_float16_boxes_on_either_side(side: str) -> None:
    big = np.array([[10, 20, 610, 620]], np.float64)
    a, b = (big.astype(np.float16), big) if side == "a" else (big, big.astype(np.float16))
    r = compare_boxes(a, [0.9], [0], b, [0.9], [0])
    assert r.matched == 1 and r.max_box_error_px == 0.0


def test_uint8_scores_keep_their_order() -> None:
    """Scores 0 and 200 (uint8) contend for one b-box: 200 goes first. Negated in uint8,
    -0 stays 0 and -200 wraps to 56, so the 0-score box would go first."""
    a = np.array([[0, 0, 10, 10], [1, 0, 11, 10.0]])
    r = compare_boxes(a, np.array([0, 200], np.uint8), [0, 0], np.array([[0, 0, 10, 10.0]]),
                      np.array([201], np.uint8), [0])
    assert (r.matched, r.only_a, r.only_b) == (1, 1, 0)
    assert r.max_box_error_px == 1.0 and r.max_score_error == 1.0


def test_tied_scores_are_matched_in_the_detectors_order() -> None:
    """21 boxes: one scoring 0.9, twenty tied at 0.5. Boxes 1 and 2 contend for one b-box
    (box 1 is 1 px off, box 2 exact): box 1 comes first in the detector's order, so it
    takes the match and the error is 1 px (an unstable sort puts box 2 first on numpy 2)."""
    n = 21
    a = np.array([[100.0 * i, 0, 100.0 * i + 10, 10] for i in range(n)])
    a[1] = [1, 500, 11, 510]
    a[2] = [0, 500, 10, 510]
    scores = np.array([0.5] * (n - 1) + [0.9])
    b = np.array([[0, 500, 10, 510.0]])
    r = compare_boxes(a, scores, np.zeros(n), b, [0.5], [0])
    assert (r.matched, r.only_a, r.only_b) == (1, n - 1, 0)
    assert r.max_box_error_px == 1.0
