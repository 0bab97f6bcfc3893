"""Compare two runners' probabilities against a registry tolerance: one helper, one verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeinfer.check.tolerances import Tolerance


@dataclass(frozen=True)
class Comparison:
    reference: str
    target: str
    n: int
    max_abs: float
    mean_abs: float
    p99_abs: float
    top1_agreement: float
    nonfinite: int
    tolerance_max_abs: float
    tolerance_min_top1: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return (f"{verdict} {self.target} vs {self.reference}: n={self.n} "
                f"max|dprob|={self.max_abs:.2e} (tol {self.tolerance_max_abs:.0e}) "
                f"top-1 agreement={self.top1_agreement:.2%} "
                f"(min {self.tolerance_min_top1:.0%})"
                + (f" NON-FINITE={self.nonfinite}" if self.nonfinite else ""))


def compare(ref: np.ndarray, out: np.ndarray, tol: Tolerance, reference: str = "reference",
            target: str = "target") -> Comparison:
    """Elementwise and top-1 statistics; NaN or inf anywhere always fails."""
    if ref.shape != out.shape:
        raise ValueError(f"shapes differ: {reference} {ref.shape} vs {target} {out.shape}")
    ref = ref.astype(np.float64)
    out = out.astype(np.float64)
    nonfinite = int((~np.isfinite(ref)).sum() + (~np.isfinite(out)).sum())
    diff = np.abs(ref - out)
    diff = np.where(np.isfinite(diff), diff, np.inf)
    agree = float((ref.argmax(-1) == out.argmax(-1)).mean()) if len(ref) else 1.0
    max_abs = float(diff.max()) if diff.size else 0.0
    return Comparison(
        reference=reference, target=target, n=len(ref), max_abs=max_abs,
        mean_abs=float(diff.mean()) if diff.size else 0.0,
        p99_abs=float(np.percentile(diff, 99)) if diff.size else 0.0,
        top1_agreement=agree, nonfinite=nonfinite,
        tolerance_max_abs=tol.max_abs, tolerance_min_top1=tol.min_top1,
        passed=nonfinite == 0 and max_abs <= tol.max_abs and agree >= tol.min_top1,
    )
