"""Drift tests with false alarms under control over long streams.

Two kinds of evidence, kept apart on purpose:

- **The alarm** is about accuracy: a one-sided CUSUM (Page 1954) on the per-frame estimated
  correctness, tuned to catch a fall of ``drop`` (default 10 points) with reference value
  ``k = drop / 2``; its threshold ``h`` comes from Siegmund's approximation of the in-control
  average run length, set to ``arl0`` frames (default 10^6, so a 10,000-frame healthy stream
  raises a false alarm with probability of about 1%). CUSUM accumulates evidence frame by
  frame, so a large fall is caught in tens of frames and a 10-point one in a few hundred,
  without a window-size trade-off.
- **Drift per signal** says what moved, as an effect size in reference standard deviations
  (frame signals, confidence) or a z-score against sampling noise (the class mix). Effect
  sizes do not grow with the window or with correlated frames (a video repeats itself), so
  one fixed bar (0.5 sigma; z 4 for the class mix) serves any stream. A signal that drifts
  without a fall in estimated accuracy (night falls, the model copes) is reported, not alarmed.
"""

from __future__ import annotations

import math

import numpy as np

#: |effect size| at or above which a frame signal or the confidence counts as drifted
EFFECT_BAR = 0.5
#: z-score of the class mix's distance above which the class mix counts as drifted
CLASS_MIX_BAR = 4.0
#: the smallest per-frame spread the CUSUM scale is allowed (a profile of identical frames)
MIN_SIGMA = 0.05


def siegmund_arl0(h: float, k: float) -> float:
    """In-control average run length of a CUSUM with standardised threshold ``h`` and
    reference value ``k`` (Siegmund 1985): (e^{2kb} - 2kb - 1) / (2k^2), b = h + 1.166."""
    b = h + 1.166
    return (math.exp(2 * k * b) - 2 * k * b - 1) / (2 * k * k)


def cusum_threshold(k: float, arl0: float) -> float:
    """The standardised threshold ``h`` whose in-control run length is ``arl0`` frames."""
    lo, hi = 0.0, 1.0
    while siegmund_arl0(hi, k) < arl0:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if siegmund_arl0(mid, k) < arl0 else (lo, mid)
    return hi


class Cusum:
    """One-sided lower CUSUM on a per-frame series whose in-control mean is ``level``."""

    def __init__(self, level: float, sigma: float, drop: float, arl0: float) -> None:
        self.sigma = max(sigma, MIN_SIGMA)
        self.level = level
        self.k = drop / 2
        self.h = cusum_threshold(self.k / self.sigma, arl0) * self.sigma
        self.s = 0.0
        #: frames since the statistic last left zero: CUSUM's own estimate of when the
        #: change began (the frames the cause and the estimate are read from on an alarm)
        self.run = 0

    def update(self, values: np.ndarray) -> bool:
        """Feed values; True when the statistic is over the threshold after the last one."""
        s, level, k, run = self.s, self.level, self.k, self.run
        for v in values.tolist():
            s += (level - v) - k
            if s <= 0.0:
                s, run = 0.0, 0
            else:
                run += 1
        self.s, self.run = s, run
        return s > self.h

    @property
    def score(self) -> float:
        """The statistic as a fraction of its threshold (>= 1: alarm)."""
        return self.s / self.h


def effect(values: np.ndarray, mean: float, std: float) -> float:
    """Standardised mean difference of ``values`` against the reference (0 if no spread)."""
    if len(values) == 0 or std <= 0:
        return 0.0
    return float((values.mean() - mean) / std)


def class_mix_z(predicted: np.ndarray, reference: np.ndarray, rng_seed: int = 0,
                draws: int = 200) -> float:
    """How far the window's predicted-class mix is from the reference mix, as a z-score of
    its total-variation distance against what sampling alone gives for a window this size
    (simulated from the reference mix: exact for any class count, 1000 ImageNet classes
    included, where normal approximations fail)."""
    n, k = len(predicted), len(reference)
    if n == 0 or k < 2:
        return 0.0
    ref = np.asarray(reference, np.float64)
    ref = ref / ref.sum()
    observed = 0.5 * np.abs(np.bincount(predicted, minlength=k)[:k] / n - ref).sum()
    null = _null_tv(n, tuple(np.round(ref, 6)), rng_seed, draws)
    return float((observed - null[0]) / max(null[1], 1e-6))


_NULL_CACHE: dict[tuple, tuple[float, float]] = {}


def _null_tv(n: int, ref: tuple[float, ...], seed: int, draws: int) -> tuple[float, float]:
    key = (n, ref, seed, draws)
    if key not in _NULL_CACHE:
        p = np.asarray(ref) / sum(ref)
        counts = np.random.default_rng(seed).multinomial(n, p, size=draws)
        tv = 0.5 * np.abs(counts / n - p).sum(axis=1)
        if len(_NULL_CACHE) > 64:
            _NULL_CACHE.clear()
        _NULL_CACHE[key] = (float(tv.mean()), float(tv.std()))
    return _NULL_CACHE[key]
