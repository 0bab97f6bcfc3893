"""Drift tests with false alarms under control over long streams.

Two kinds of evidence, kept apart on purpose:

- **The alarm** is about accuracy: a one-sided CUSUM (Page 1954) on the per-frame estimated
  correctness, tuned to catch a fall of ``drop`` (default 10 points) with reference value
  ``k = drop / 2``, against the reference level less two of its standard errors (the
  reference is a sample too); its threshold ``h`` is simulated from the reference's own
  per-frame values so that a 10,000-frame healthy stream raises a false alarm with
  probability ``10,000 / arl0`` (1% for the default 10^6). CUSUM accumulates evidence frame by
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


#: the alarm's defaults: the fall it is tuned to catch, the healthy frames between false
#: alarms, and the reference's standard errors the in-control level stays below it
DEFAULT_DROP, DEFAULT_ARL0, DEFAULT_MARGIN_SE = 0.10, 1e6, 2.0
#: healthy streams and their length in the threshold's simulation
SIM_STREAMS = 2000
SIM_FRAMES = 10_000


def simulated_threshold(levels: np.ndarray, ic_level: float, k: float, arl0: float,
                        seed: int = 0) -> float:
    """The CUSUM threshold whose false-alarm probability over ``SIM_FRAMES`` healthy frames
    is ``SIM_FRAMES / arl0`` (1% for arl0 = 10^6): ``SIM_STREAMS`` streams drawn from the
    reference's own per-frame values (``levels``: their quantiles), the matching quantile of
    each stream's largest statistic. Simulated rather than taken from a Gaussian formula
    because ATC's per-frame values are 0/1 and skewed: Siegmund's approximation gave 13
    false alarms in 100,000 healthy Fashion-MNIST frames (docs/monitor/study.md)."""
    key = (tuple(np.round(levels, 6)), round(ic_level, 6), round(k, 6), arl0, seed)
    if key in _H_CACHE:
        return _H_CACHE[key]
    rng = np.random.default_rng(seed)
    q = np.asarray(levels, np.float64)
    grid = np.linspace(0, 1, len(q))
    s = np.zeros(SIM_STREAMS)
    peak = np.zeros(SIM_STREAMS)
    for _ in range(0, SIM_FRAMES, 1000):
        draws = np.interp(rng.random((1000, SIM_STREAMS)), grid, q)
        for row in (ic_level - k) - draws:
            s += row
            np.maximum(s, 0.0, out=s)
            np.maximum(peak, s, out=peak)
    h = float(np.quantile(peak, max(0.5, 1.0 - SIM_FRAMES / arl0)))
    if len(_H_CACHE) > 32:
        _H_CACHE.clear()
    _H_CACHE[key] = h = max(h, k)
    return h


_H_CACHE: dict[tuple, float] = {}


def in_control_level(level: float, level_std: float, n: int, margin_se: float) -> float:
    """The reference level less ``margin_se`` of its standard errors (it is a sample too)."""
    return level - margin_se * level_std / math.sqrt(max(n, 1))


class Cusum:
    """One-sided lower CUSUM on a per-frame series whose in-control mean is ``level``."""

    def __init__(self, levels: np.ndarray, level: float, drop: float, arl0: float,
                 h: float | None = None) -> None:
        """``h``: the threshold when it is known (the profile stores the default's, simulated
        once at convert time: the simulation takes about a second here, more on a Pi)."""
        self.level = level
        self.k = drop / 2
        self.h = simulated_threshold(levels, level, self.k, arl0) if h is None else h
        self.s = 0.0
        #: frames since the statistic last left zero: CUSUM's own estimate of when the
        #: change began (the frames the cause and the estimate are read from on an alarm)
        self.run = 0

    def update(self, values: np.ndarray) -> bool:
        """Feed values; True when the statistic was over the threshold at any of them."""
        s, level, k, run, h = self.s, self.level, self.k, self.run, self.h
        over = False
        for v in values.tolist():
            s += (level - v) - k
            if s <= 0.0:
                s, run = 0.0, 0
            else:
                run += 1
                over = over or s > h
        self.s, self.run = s, run
        return over

    @property
    def score(self) -> float:
        """The statistic as a fraction of its threshold (>= 1: alarm)."""
        return self.s / self.h


def effect(values: np.ndarray, mean: float, std: float) -> float:
    """Standardised mean difference of ``values`` against the reference (0 if no spread)."""
    if len(values) == 0 or std <= 0:
        return 0.0
    return float((values.mean() - mean) / std)


def class_mix_z(predicted: np.ndarray, reference: np.ndarray, n_reference: int,
                rng_seed: int = 0, draws: int = 200) -> float:
    """How far the window's predicted-class mix is from the reference mix, as a z-score of
    its total-variation distance against what sampling alone gives: two samples of the
    reference mix, of the reference's size and the window's, simulated (exact for any class
    count; with 1000 ImageNet classes and a 600-frame reference, most classes were seen
    once or never, and a one-sample null flagged every healthy window)."""
    n, k = len(predicted), len(reference)
    if n == 0 or k < 2:
        return 0.0
    ref = np.asarray(reference, np.float64)
    ref = ref / ref.sum()
    observed = 0.5 * np.abs(np.bincount(predicted, minlength=k)[:k] / n - ref).sum()
    null = _null_tv(n, n_reference, tuple(np.round(ref, 6)), rng_seed, draws)
    return float((observed - null[0]) / max(null[1], 1e-6))


_NULL_CACHE: dict[tuple, tuple[float, float]] = {}


def _null_tv(n: int, n_ref: int, ref: tuple[float, ...], seed: int, draws: int
             ) -> tuple[float, float]:
    key = (n, n_ref, ref, seed, draws)
    if key not in _NULL_CACHE:
        p = np.asarray(ref) / sum(ref)
        rng = np.random.default_rng(seed)
        a = rng.multinomial(n, p, size=draws) / n
        b = rng.multinomial(max(n_ref, 1), p, size=draws) / max(n_ref, 1)
        tv = 0.5 * np.abs(a - b).sum(axis=1)
        if len(_NULL_CACHE) > 64:
            _NULL_CACHE.clear()
        _NULL_CACHE[key] = (float(tv.mean()), float(tv.std()))
    return _NULL_CACHE[key]
