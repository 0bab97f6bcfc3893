"""The registry entries a detector is judged by, as a detector's parity pack stores them
(session 10, docs/mutation/detection.md): ``pack_entries(DETECT_KINDS)`` is what a device
reads back, so its keys, figures and the skipping of absent kinds are part of the format.
The figures themselves are asserted through the registry (never restated)."""

from __future__ import annotations

import math

from edgeinfer.parity.tolerances import DETECT_KINDS, TOLERANCES, pack_entries, tolerance


def test_a_detector_pack_stores_its_fp32_box_and_score_bounds() -> None:
    entries = pack_entries(DETECT_KINDS)
    assert list(entries) == ["detect_boxes/fp32", "detect_scores/fp32"]
    for key, entry in entries.items():
        kind, dtype = key.split("/")
        t = tolerance(kind, dtype)
        assert entry == {"max_abs": t.max_abs, "min_top1": t.min_top1, "reason": t.reason}
        assert math.isfinite(entry["max_abs"])  # a pack's manifest holds finite numbers
    # int8's detection bounds are unbounded boxes/scores: never stored
    assert all(math.isinf(tolerance(k, "int8").max_abs) for k in ("detect_boxes",
                                                                  "detect_scores"))


def test_kinds_the_registry_lacks_are_left_out() -> None:
    assert ("detect_boxes", "fp16") not in TOLERANCES
    assert pack_entries((("detect_boxes", "fp16"), *DETECT_KINDS)) == pack_entries(DETECT_KINDS)
    assert pack_entries(()) == {}
