"""``--max-latency-ratio`` alone when plain int8 fits the budget but no float layer does
(the loop's latency cap is 0): the most accurate int8 within the budget is plain int8, and
it is what the loop returns.

Found in review (session 10): the loop refused it with "plain int8 takes 6.00 ms per frame,
above 0.62x fp32's 10.00 ms" - a false figure (6.00 ms is within 6.20 ms) on an int8 that
meets the budget. Same stand-in as tests/int8/test_control_loop.py: real Fashion-MNIST test
images, answers lost per layer; plain int8 0.60x fp32, each layer float +0.25x.
"""

from __future__ import annotations

import pytest

from edgeinfer.errors import ParityError
from tests.int8.test_control_loop import agreement_loop, speed


def test_budget_alone_ships_plain_int8_when_no_float_layer_fits() -> None:
    lines: list[str] = []
    res = agreement_loop(lines, min_agreement=None, max_latency_ratio=0.62,
                         latency=speed(0.25, True))
    assert res.latency_cap == 0
    assert res.final.kept_float == [] and res.final.latency_ms == pytest.approx(6.0)
    assert any("at most 0 of 4 ranked layers float within 6.20 ms" in x for x in lines), lines


def test_with_a_target_no_room_is_still_refused() -> None:
    """With a target plain int8 misses, a budget that leaves no float layer is refused, and
    the refusal says so (not that plain int8 is over the budget)."""
    with pytest.raises(ParityError) as e:
        agreement_loop([], min_agreement=0.99, max_latency_ratio=0.62,
                       latency=speed(0.25, True))
    msg = str(e.value)
    assert "at most 0 of 4 layers float fit it" in msg and "plain int8 takes" not in msg, msg
