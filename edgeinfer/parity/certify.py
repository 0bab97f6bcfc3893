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
from dataclasses import dataclass, replace
from typing import Any

from edgeinfer.parity.stats import Comparison, wilson
from edgeinfer.parity.tolerances import Tolerance, tolerance

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


def pct(x: float) -> str:
    """99% for a whole percent, 98.50% otherwise: a user's 0.985 is not rounded to 99%."""
    return f"{x:.0%}" if abs(x * 100 - round(x * 100)) < 1e-9 else f"{x:.2%}"


def explain(cmp: Comparison) -> str:
    """Why a passing comparison is not certified, in frames (the user can act on it)."""
    bound, n = cmp.tolerance_min_top1, cmp.n
    d = cmp.flips
    lo = cmp.top1_ci95[0]
    head = f"{d} of {n} frames disagree"
    need = frames_needed(bound, d, n)
    if need is None:
        return (f"{head}; at this rate no number of frames certifies top-1 agreement >= "
                f"{pct(bound)} (95% lower bound {lo:.2%})")
    k, j = need
    more = ", all agreeing" if j == 0 else f" with at most {j} disagreement{'s' * (j != 1)}"
    return (f"{head}; to certify >= {pct(bound)} you need at least {k} frames{more} "
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


# ---------------------------------------------------------------- the int8 target
KEY_TARGET = "int8_target"  # provenance and parity entry: what an int8 artifact is judged by


@dataclass(frozen=True)
class Int8Target:
    """What an int8 artifact is judged against, by every command: the user's or the default.

    Why one object: convert's loop stopped at the user's ``--min-agreement 0.98`` while the
    gate kept the registry's 99% and said NOT CERTIFIED (issue 26). convert stores it in the
    provenance (``int8_target``) and the parity entry; ``check``, ``verify``, ``info`` and the
    server read it back instead of the registry's default.

    ``min_agreement`` bounds the 95% lower bound of top-1 agreement (0.0 when the user asked
    only for ``max_drop``: agreement is then reported, not judged); ``max_drop`` bounds the
    labelled accuracy drop (None: the registry's); ``asked`` says whose target it is;
    ``budget_only``: a latency budget without a target - the artifact is the most accurate
    int8 within it, and its agreement is stated against the default target.
    """

    min_agreement: float
    max_drop: float | None = None
    asked: bool = False
    max_latency_ratio: float | None = None
    budget_only: bool = False

    @classmethod
    def of(cls, fmt: str, min_agreement: float | None = None, max_drop: float | None = None,
           max_latency_ratio: float | None = None) -> Int8Target:
        """The target a conversion asked for; the registry's int8 bound when none."""
        asked = min_agreement is not None or max_drop is not None
        default = tolerance(fmt, "int8").min_top1
        bound = min_agreement if min_agreement is not None else (0.0 if asked else default)
        return cls(float(bound), max_drop, asked, max_latency_ratio,
                   not asked and max_latency_ratio is not None)

    @classmethod
    def read(cls, provenance: dict[str, Any] | None) -> Int8Target | None:
        """The target stored by convert (None for artifacts made before it was stored)."""
        d = (provenance or {}).get(KEY_TARGET)
        if not isinstance(d, dict) or not isinstance(d.get("min_agreement"), (int, float)):
            return None
        drop = d.get("max_drop")
        ratio = d.get("max_latency_ratio")
        return cls(float(d["min_agreement"]),
                   float(drop) if isinstance(drop, (int, float)) else None,
                   bool(d.get("asked")), float(ratio) if isinstance(ratio, (int, float))
                   else None, bool(d.get("budget_only")))

    def to_dict(self) -> dict[str, Any]:
        return {"min_agreement": self.min_agreement, "max_drop": self.max_drop,
                "asked": self.asked, "max_latency_ratio": self.max_latency_ratio,
                "budget_only": self.budget_only, "describe": self.describe()}

    def tolerance(self, fmt: str) -> Tolerance:
        """The registry's int8 tolerance with this target's agreement bound."""
        base = tolerance(fmt, "int8")
        if self.min_agreement == base.min_top1:
            return base
        return replace(base, min_top1=self.min_agreement,
                       reason=f"the user's int8 target ({self.describe()}); " + base.reason)

    def describe(self) -> str:
        """``>= 98% top-1 agreement with fp32 (95% lower bound, --min-agreement)``."""
        who = "--min-agreement" if self.asked else "the default int8 target"
        out = []
        if self.min_agreement > 0:
            out.append(f">= {pct(self.min_agreement)} top-1 agreement (95% lower bound, {who})")
        if self.max_drop is not None:
            out.append(f"accuracy drop <= {pct(self.max_drop)} (--max-drop)")
        if self.budget_only:
            out.append(f"within {self.max_latency_ratio:.2f}x fp32's latency "
                       "(--max-latency-ratio alone: the most accurate int8 within it)")
        return "; ".join(out)


def judged_tolerance(fmt: str, dtype: str, provenance: dict[str, Any] | None) -> Tolerance:
    """The tolerance an artifact is judged by: for int8 the stored target's, else the
    registry's (``check`` and ``verify`` call this with the artifact's own provenance)."""
    target = Int8Target.read(provenance) if dtype == "int8" else None
    return target.tolerance(fmt) if target else tolerance(fmt, dtype)


def drop_bound(dtype: str, provenance: dict[str, Any] | None) -> float | None:
    """The accuracy drop an artifact may show: the stored ``--max-drop``, else the registry's
    ``accuracy_drop`` bound for its dtype (None: not judged)."""
    from edgeinfer.parity.tolerances import TOLERANCES

    target = Int8Target.read(provenance) if dtype == "int8" else None
    if target is not None and target.max_drop is not None:
        return target.max_drop
    key = ("accuracy_drop", dtype)
    return TOLERANCES[key].max_abs if key in TOLERANCES else None


def against(cmp: Comparison, tol: Tolerance) -> Comparison:
    """The same comparison judged by another tolerance (a budget-only int8 artifact, gated
    with no bound, has its figures stated against the default target's). The rule is
    ``Comparison.judged_by``, the one ``compare`` uses: the same statistic (max or the
    99th-percentile frame, the tolerance's ``over``) is judged by both."""
    return cmp.judged_by(tol)


# ---------------------------------------------------------------- detection agreement
#: The F1 every detector's agreement is certified at (issue 28): int8's bound, the loosest
#: a detector is held to. An exact target (fp32: F1 1.0 vs the framework) is judged on the
#: point estimate, as the classifiers' is, and certified at this floor: no finite set of
#: detections shows F1 = 1, but 3 matched boxes must not read as a proof either.
DETECT_FLOOR = tolerance("detect_boxes", "int8").min_top1


def f1_of_union(p: float) -> float:
    """F1 from the union proportion ``p`` = matched / (matched + only one side):
    ``F1 = 2m / (2m + a + b) = 2p / (1 + p)``, increasing in ``p``."""
    return 2 * p / (1 + p)


def union_of_f1(f1: float) -> float:
    """The inverse of :func:`f1_of_union`."""
    return f1 / (2 - f1)


@dataclass(frozen=True)
class DetectionAgreement:
    """Two detectors' detections on the same frames, matched at IoU >= 0.5.

    The proportion certified is over the UNION of both sides' detections: each object
    either side reports is one trial, agreed when the other side matched it. F1 counts a
    matched pair twice; the interval must not (it would claim twice the evidence)."""

    matched: int
    only_a: int
    only_b: int
    frames: int = 0

    @property
    def union(self) -> int:
        return self.matched + self.only_a + self.only_b

    @property
    def f1(self) -> float:
        total = 2 * self.matched + self.only_a + self.only_b
        return 1.0 if total == 0 else 2 * self.matched / total

    @property
    def f1_ci95(self) -> tuple[float, float]:
        """The 95% Wilson interval of the union proportion, as F1 (``(0, 1)`` when nothing
        was detected: no detection shows nothing)."""
        lo, hi = wilson(self.matched, self.union)
        return f1_of_union(lo), f1_of_union(hi)


def explain_detections(d: DetectionAgreement, bound: float, sides: tuple[str, str]) -> str:
    """Why agreeing detections are not certified, in detections and frames."""
    lo = d.f1_ci95[0]
    head = (f"{d.matched} of {d.union} detections agree ({d.only_a} only in the {sides[0]}, "
            f"{d.only_b} only in the {sides[1]})")
    if d.union == 0:  # no rate was measured: "at this rate no number certifies" would be
        k = frames_to_certify(union_of_f1(bound), CAP)  # wrong (191 matched would at 99%)
        return (f"no detections on either side over {d.frames} frames: nothing was compared; "
                f"to certify F1 >= {pct(bound)} you need at least {k} detections, all matched")
    need = frames_needed(union_of_f1(bound), d.only_a + d.only_b, d.union)
    if need is None:
        return (f"{head}; at this rate no number of detections certifies F1 >= {pct(bound)} "
                f"(95% lower bound {lo:.2%})")
    k, j = need
    more = ", all matched" if j == 0 else f" with at most {j} unmatched"
    per = d.union / d.frames if d.frames and d.union else 0.0
    frames = f", about {math.ceil(k / per)} frames like these" if per else ""
    return (f"{head}; to certify F1 >= {pct(bound)} you need at least {k} detections{more}"
            f"{frames} (95% lower bound now {lo:.2%})")


def certify_detections(d: DetectionAgreement, min_f1: float, *,
                       sides: tuple[str, str] = ("artifact", "framework"),
                       data_note: str | None = None,
                       extra_failures: list[str] | None = None) -> Certification:
    """The one rule for detection agreement: FAIL below ``min_f1`` (or on any other failed
    figure), NOT CERTIFIED when the F1 meets it but the 95% lower bound does not reach
    ``min(min_f1, DETECT_FLOOR)``, PASS otherwise."""
    problems = list(extra_failures or [])
    if d.f1 < min_f1:
        problems.insert(0, f"detection F1 {d.f1:.4f} < {min_f1:g} ({d.only_a} boxes only in "
                           f"the {sides[0]}, {d.only_b} only in the {sides[1]})")
    if problems:
        return Certification(FAIL, FAIL, "; ".join(problems))
    bound = min(min_f1, DETECT_FLOOR)
    if d.f1_ci95[0] < bound:
        return Certification(qualified(NOT_CERTIFIED, data_note), NOT_CERTIFIED,
                             explain_detections(d, bound, sides))
    return Certification(qualified(PASS, data_note), PASS, "")
