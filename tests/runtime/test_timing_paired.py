"""runtime.timing.paired_ratios: the detector int8 loop's latency measure (one call of each
side back to back, which goes first alternating), moved here from detect_control so the one
timing harness owns it."""

from __future__ import annotations

import time

import numpy as np

from edgeinfer.runtime.timing import paired_ratios


def test_pairs_alternate_and_the_median_is_the_ratio() -> None:
    calls: list[str] = []

    def slow() -> None:
        calls.append("fn")
        time.sleep(0.004)

    def fast() -> None:
        calls.append("ref")
        time.sleep(0.001)

    r = paired_ratios(slow, fast, runs=6, warmup=1)
    assert len(r) == 6 and 2.0 < float(np.median(r)) < 8.0
    timed = calls[2:]  # after one warm-up call each
    firsts = [timed[2 * i] for i in range(6)]
    assert firsts == ["ref", "fn", "ref", "fn", "ref", "fn"]
    assert all({timed[2 * i], timed[2 * i + 1]} == {"fn", "ref"} for i in range(6))
