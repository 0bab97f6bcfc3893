"""Detections against detections: the comparison for boxes (issue 28), and the proportion
detection agreement is certified on.

The matching itself lives one floor down (:mod:`edgeinfer.runtime.detect.match`) so the
diagnosis engine scores hypotheses with the same rule; it is re-exported here, where the
judging core has always found it.
"""

from __future__ import annotations

from edgeinfer.runtime.detect.match import BoxComparison, compare_boxes

__all__ = ["BoxComparison", "compare_boxes"]
