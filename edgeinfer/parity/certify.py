"""Can a measured agreement certify a bound? The 95% Wilson interval decides, not the point.

Why: 6 of 6 photos agreeing has a 95% interval of [61%, 100%]; calling that a PASS of a
">= 99% top-1 agreement" bound claims what the data cannot show. A statistical bound (one
below 1.0, such as int8's 99%) is certified only when the interval's lower bound reaches it;
an exact bound (1.0, fp32) is judged on the point estimate, since no finite sample can
push a lower bound to 1. The converter's gate and ``verify`` share this rule.
"""

from __future__ import annotations

from edgeinfer.parity.stats import Comparison, wilson

NOT_CERTIFIED = "NOT CERTIFIED"


def frames_to_certify(min_top1: float, cap: int = 100_000) -> int | None:
    """Frames needed, all agreeing, for the Wilson lower bound to reach ``min_top1``."""
    if min_top1 >= 1.0 or wilson(cap, cap)[0] < min_top1:
        return None
    lo, hi = 1, cap
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if wilson(mid, mid)[0] < min_top1 else (lo, mid)
    return lo


def uncertified(cmp: Comparison) -> str | None:
    """Why a passing comparison cannot certify its agreement bound, or None when it can."""
    bound, lo = cmp.tolerance_min_top1, cmp.top1_ci95[0]
    if bound >= 1.0 or lo >= bound:
        return None
    need = frames_to_certify(bound)
    more = f" (at least {need} frames, all agreeing, are needed)" if need else ""
    return (f"not enough frames to certify top-1 agreement >= {bound:.0%}: the 95% interval's "
            f"lower bound is {lo:.2%} on {cmp.n} frames{more}")
