"""One certification rule and one vocabulary: PASS, NOT CERTIFIED, FAIL.

Every command that judges an artifact against its framework (convert's gate, ``check``,
``verify``; ``info`` and the server read the word convert stored) calls :func:`certify` on
the same :class:`~edgeinfer.parity.stats.Comparison`, so the same numbers get the same word.

- FAIL: a figure is out of the registry's tolerance (NaN/inf, max |dprob|, top-1 agreement).
- NOT CERTIFIED: every figure is within tolerance, but the 95% Wilson interval of top-1
  agreement reaches below a statistical bound (one below 1.0, such as int8's 99%). 6 of 6
  photos agreeing has an interval of [61%, 100%]: a ">= 99%" claim on it is not earned.
  The reason is said in the user's terms: how many frames disagree and how many frames
  (with how many disagreements at most) would certify the bound.
- PASS: within tolerance and certified. An exact bound (1.0, fp32) is judged on the point
  estimate, since no finite sample can push a lower bound to 1.

A verdict on frames the user did not choose (convert's default data for a user's model)
is qualified, e.g. ``PASS (bundled photos only: not your data)``: it proves the export,
not the model on the user's domain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeinfer.parity.stats import Comparison, wilson

PASS, NOT_CERTIFIED, FAIL = "PASS", "NOT CERTIFIED", "FAIL"
WORDS = (PASS, NOT_CERTIFIED, FAIL)
CAP = 10_000_000  # frames: beyond this, "no number of frames" is the honest answer


@dataclass(frozen=True)
class Certification:
    """The word for one comparison, and why (empty for an unqualified PASS)."""

    word: str  # PASS | NOT CERTIFIED | FAIL, possibly qualified: "PASS (... not your data)"
    base: str  # the unqualified word, one of WORDS
    reason: str = ""

    @property
    def certified(self) -> bool:
        return self.base == PASS

    def line(self) -> str:
        return f"{self.word} - {self.reason}" if self.reason else self.word


def qualified(word: str, data_note: str | None) -> str:
    """``PASS`` -> ``PASS (bundled photos only: not your data)``; FAIL is never softened."""
    return f"{word} ({data_note})" if data_note and word != FAIL else word


def frames_to_certify(min_top1: float, cap: int = 100_000) -> int | None:
    """Frames needed, all agreeing, for the Wilson lower bound to reach ``min_top1``."""
    if min_top1 >= 1.0 or wilson(cap, cap)[0] < min_top1:
        return None
    lo, hi = 1, cap
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if wilson(mid, mid)[0] < min_top1 else (lo, mid)
    return lo


def frames_needed(bound: float, disagree: int, n: int) -> tuple[int, int] | None:
    """(K, J): at the observed disagreement rate, the fewest frames K whose 95% lower bound
    reaches ``bound``, and the most disagreements J that K frames may hold and still certify.
    None when no number of frames certifies at this rate (the rate itself is too high)."""
    if bound >= 1.0 or n <= 0:
        return None
    if disagree == 0:
        k = frames_to_certify(bound, CAP)
        return (k, 0) if k else None
    rate = disagree / n
    if wilson(CAP * (1 - rate), CAP)[0] < bound:
        return None
    lo, hi = 1, CAP
    while lo < hi:  # wilson's lower bound grows with the frame count at a fixed rate
        mid = (lo + hi) // 2
        lo, hi = (mid + 1, hi) if wilson(mid * (1 - rate), mid)[0] < bound else (lo, mid)
    k = lo  # then whole disagreements at the observed rate (ceil: never optimistic)
    while k < CAP and wilson(k - math.ceil(rate * k - 1e-9), k)[0] < bound:
        k += 1
    j = 0
    while wilson(k - (j + 1), k)[0] >= bound:
        j += 1
    return k, j


def explain(cmp: Comparison) -> str:
    """Why a passing comparison is not certified, in frames (the user can act on it)."""
    bound, n = cmp.tolerance_min_top1, cmp.n
    d = cmp.flips
    lo = cmp.top1_ci95[0]
    head = f"{d} of {n} frames disagree"
    need = frames_needed(bound, d, n)
    if need is None:
        return (f"{head}; at this rate no number of frames certifies top-1 agreement >= "
                f"{bound:.0%} (95% lower bound {lo:.2%})")
    k, j = need
    more = ", all agreeing" if j == 0 else f" with at most {j} disagreement{'s' * (j != 1)}"
    return (f"{head}; to certify >= {bound:.0%} you need at least {k} frames{more} "
            f"(95% lower bound now {lo:.2%})")


def certify(cmp: Comparison, data_note: str | None = None,
            extra_failures: list[str] | None = None) -> Certification:
    """The one rule (module docstring). ``extra_failures``: other figures a command judged
    (batch consistency, accuracy drop) that fail the artifact too."""
    problems = cmp.problems() + list(extra_failures or [])
    if problems or not cmp.passed:
        return Certification(FAIL, FAIL, "; ".join(problems) or "out of tolerance")
    bound, lo = cmp.tolerance_min_top1, cmp.top1_ci95[0]
    if bound < 1.0 and lo < bound:
        return Certification(qualified(NOT_CERTIFIED, data_note), NOT_CERTIFIED, explain(cmp))
    return Certification(qualified(PASS, data_note), PASS, "")
