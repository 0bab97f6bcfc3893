"""One comparison type: target vs reference probabilities, judged against a registry tolerance.

The converter's gate, the ladder, ``verify`` and the doctor all build a :class:`Comparison`
with :func:`compare`; nothing else computes parity statistics. NaN or inf anywhere fails.

The verdict has one rule, :meth:`Comparison.judged_by`: ``compare`` uses it, and so does
``parity.certify.against`` when the same figures are judged by another tolerance. The
tolerance's ``over`` says whether its ``max_abs`` bounds the max or the 99th-percentile
frame (``frame_p99_abs``); both figures are always computed and reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from edgeinfer.interval import wilson
from edgeinfer.parity.tolerances import FRAME_P99, Tolerance

REL_FLOOR = 1e-3  # relative error of probabilities: |d| / max(|p_ref|, REL_FLOOR)


@dataclass(frozen=True)
class Comparison:
    """Elementwise errors, agreement (with its 95% interval) and the verdict.

    ``p99_abs`` is over every value (frames x classes); ``frame_p99_abs`` is over frames of
    each frame's largest |dprob| - the statistic a ``frame_p99`` tolerance bounds, named by
    ``tolerance_over``.
    """

    reference: str
    target: str
    n: int
    max_abs: float
    mean_abs: float
    p99_abs: float
    frame_p99_abs: float
    max_rel: float
    mean_rel: float
    p99_rel: float
    top1_agreement: float
    top1_ci95: tuple[float, float]
    top5_agreement: float
    flips: int
    nonfinite: int
    tolerance_max_abs: float
    tolerance_min_top1: float
    tolerance_over: str  # the statistic tolerance_max_abs bounds (parity/tolerances.py)
    passed: bool

    @property
    def judged_abs(self) -> float:
        """The |dprob| figure the tolerance bounds: the max, or the 99th-percentile frame."""
        return self.frame_p99_abs if self.tolerance_over == FRAME_P99 else self.max_abs

    @property
    def judged_name(self) -> str:
        """What ``judged_abs`` is, as every report names it."""
        return "p99-frame|dp|" if self.tolerance_over == FRAME_P99 else "max|dp|"

    def judged_by(self, tol: Tolerance) -> Comparison:
        """These figures judged by ``tol``: the one verdict rule (``compare`` and
        ``parity.certify.against`` both call it)."""
        judged = self.frame_p99_abs if tol.over == FRAME_P99 else self.max_abs
        return replace(self, tolerance_max_abs=tol.max_abs, tolerance_min_top1=tol.min_top1,
                       tolerance_over=tol.over,
                       passed=(self.nonfinite == 0 and judged <= tol.max_abs
                               and self.top1_agreement >= tol.min_top1))

    def bound_text(self) -> str:
        """The tolerance in words, e.g. ``max|dp| <= 0.0001, top-1 >= 100%``."""
        return (f"{self.judged_name} <= {self.tolerance_max_abs:.2g}, "
                f"top-1 >= {self.tolerance_min_top1:.0%}")

    def abs_text(self, fmt: str = ".2e") -> str:
        """The max |dprob| for a table cell, with the 99th-percentile frame beside it when
        that is the judged figure (so a PASS beside a max above the bound reads right)."""
        own = format(self.max_abs, fmt)
        if self.tolerance_over != FRAME_P99:
            return own
        return f"{own} (p99-frame {self.frame_p99_abs:.1e})"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["top1_ci95"] = list(self.top1_ci95)
        return d

    def problems(self) -> list[str]:
        """What failed, one phrase each (empty when the comparison passed)."""
        out = []
        if self.nonfinite:
            out.append(f"{self.nonfinite} NaN/inf outputs")
        if self.top1_agreement < self.tolerance_min_top1:
            out.append(f"top-1 agreement {self.top1_agreement:.2%} < "
                       f"{self.tolerance_min_top1:.0%} vs {self.reference}")
        if self.judged_abs > self.tolerance_max_abs:
            worst = f" (max {self.max_abs:.2e})" if self.tolerance_over == FRAME_P99 else ""
            out.append(f"{self.judged_name} {self.judged_abs:.2e} > "
                       f"{self.tolerance_max_abs:.2g}{worst} vs {self.reference}")
        return out

    def summary(self, verdict: str | None = None) -> str:
        """One line; ``verdict`` overrides PASS/FAIL (e.g. NOT CERTIFIED, decided above).
        The judged figure is printed beside its tolerance; under a ``frame_p99`` tolerance
        the max follows it, reported."""
        verdict = verdict or ("PASS" if self.passed else "FAIL")
        lo, hi = self.top1_ci95
        if self.tolerance_over == FRAME_P99:
            dp = (f"p99-frame|dprob|={self.frame_p99_abs:.2e} (tol "
                  f"{self.tolerance_max_abs:.2g}) max|dprob|={self.max_abs:.2e} (reported)")
        else:
            dp = f"max|dprob|={self.max_abs:.2e} (tol {self.tolerance_max_abs:.2g})"
        return (f"{verdict} {self.target} vs {self.reference}: n={self.n} {dp} "
                f"top-1 agreement={self.top1_agreement:.2%} [95% CI {lo:.1%}, {hi:.1%}] "
                f"(min {self.tolerance_min_top1:.0%})"
                + (f" NON-FINITE={self.nonfinite}" if self.nonfinite else ""))


def compare(ref: np.ndarray, out: np.ndarray, tol: Tolerance, reference: str = "reference",
            target: str = "target") -> Comparison:
    """Statistics of ``out`` against ``ref`` ([N, K] probabilities) and the verdict."""
    if ref.shape != out.shape:
        raise ValueError(f"shapes differ: {reference} {ref.shape} vs {target} {out.shape}")
    ref = ref.astype(np.float64)
    out = out.astype(np.float64)
    nonfinite = int((~np.isfinite(ref)).sum() + (~np.isfinite(out)).sum())
    diff = np.abs(ref - out)
    diff = np.where(np.isfinite(diff), diff, np.inf)
    rel = diff / np.maximum(np.abs(ref), REL_FLOOR)
    n = len(ref)
    same = int((ref.argmax(-1) == out.argmax(-1)).sum()) if n else 0
    agree = same / n if n else 1.0
    max_abs = float(diff.max()) if diff.size else 0.0
    per_frame = diff.reshape(n, -1).max(-1) if diff.size else diff.reshape(0)

    def stat(a: np.ndarray, f: Any) -> float:
        return float(f(a)) if a.size else 0.0

    return Comparison(
        reference=reference, target=target, n=n, max_abs=max_abs,
        mean_abs=stat(diff, np.mean), p99_abs=stat(diff, lambda a: np.percentile(a, 99)),
        frame_p99_abs=stat(per_frame, lambda a: np.percentile(a, 99)),
        max_rel=stat(rel, np.max), mean_rel=stat(rel, np.mean),
        p99_rel=stat(rel, lambda a: np.percentile(a, 99)),
        top1_agreement=agree, top1_ci95=wilson(same, n), top5_agreement=topk_agreement(ref, out),
        flips=n - same, nonfinite=nonfinite, tolerance_max_abs=tol.max_abs,
        tolerance_min_top1=tol.min_top1, tolerance_over=tol.over, passed=False,
    ).judged_by(tol)


def topk_agreement(ref: np.ndarray, out: np.ndarray, k: int = 5) -> float:
    """Fraction of frames whose reference top-1 class is among the target's top-k."""
    if not len(ref):
        return 1.0
    k = min(k, ref.shape[-1])
    top = np.argpartition(-out, k - 1, axis=-1)[:, :k]
    return float((top == ref.argmax(-1)[:, None]).any(-1).mean())


def accuracy(probs: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Top-1 accuracy against ground-truth labels, with its 95% interval."""
    correct = int((probs.argmax(-1) == labels).sum())
    lo, hi = wilson(correct, len(labels))
    return {"accuracy": correct / max(len(labels), 1), "ci95": [lo, hi], "n": len(labels)}


def confusion(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """K x K counts: row = true label, column = prediction."""
    k = probs.shape[-1]
    m = np.zeros((k, k), np.int64)
    np.add.at(m, (labels, probs.argmax(-1)), 1)
    return m


def flip_matrix(ref: np.ndarray, out: np.ndarray) -> np.ndarray:
    """K x K counts: row = reference top-1, column = target top-1 (diagonal = agreement)."""
    return confusion(out, ref.argmax(-1))


def flip_pairs(ref: np.ndarray, out: np.ndarray, labels: Sequence[str],
               ids: Sequence[str] | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The (reference class -> target class) pairs of flipped top-1 predictions, most first."""
    a, b = ref.argmax(-1), out.argmax(-1)
    pairs: dict[tuple[int, int], list[int]] = {}
    for i in np.flatnonzero(a != b):
        pairs.setdefault((int(a[i]), int(b[i])), []).append(int(i))

    def name(c: int) -> str:
        return labels[c] if c < len(labels) else str(c)

    rows = [{"from": name(f), "to": name(t), "from_index": f, "to_index": t, "count": len(v),
             "examples": [ids[i] if ids else str(i) for i in v[:3]]}
            for (f, t), v in pairs.items()]
    return sorted(rows, key=lambda r: -r["count"])[:limit]
