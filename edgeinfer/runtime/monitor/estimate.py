"""Accuracy without labels: confidence-based estimators, all on a window of probabilities.

Every estimator is calibrated on the labelled reference frames (the parity data) and then
reads only the deployed model's probabilities:

- ``average_confidence`` ("confidence alone"): mean top-1 probability. Right only when the
  model is calibrated, and CNNs are over-confident under shift.
- ``doc`` (difference of confidences, Guillory et al. 2021): reference accuracy minus the
  fall of the mean confidence.
- ``atc_maxprob`` / ``atc_entropy`` (average thresholded confidence, Garg et al. ICLR 2022):
  a threshold t on a score (top-1 probability, or negative entropy) is chosen so that the
  reference frames above t are as many as the reference frames classified right; the
  estimate is the fraction of window frames above t.
- ``*_ts``: the same after temperature scaling fitted on the reference by likelihood.

Which one the monitor uses is the profile's ``estimator``: docs/monitor/study.md measured them
on shifts the choice was not made on.
"""

from __future__ import annotations

import math

import numpy as np

ESTIMATORS: tuple[str, ...] = ("average_confidence", "doc", "atc_maxprob", "atc_entropy",
                               "average_confidence_ts", "atc_entropy_ts")
#: what the monitor uses when a profile does not say (chosen on the tune shifts: study.md)
DEFAULT_ESTIMATOR = "atc_entropy"
_EPS = 1e-12


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities after dividing the logits (log-probabilities) by ``temperature``."""
    if temperature == 1.0:
        return probs
    z = np.log(np.clip(probs, _EPS, 1.0)) / temperature
    z -= z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def scores(probs: np.ndarray, kind: str) -> np.ndarray:
    """Per-frame confidence score: ``maxprob`` (top-1 probability) or ``entropy`` (negative
    entropy, 0 for a one-hot row)."""
    if kind == "maxprob":
        return probs.max(axis=-1)
    p = np.clip(probs, _EPS, 1.0)
    return (p * np.log(p)).sum(axis=-1)


def atc_threshold(score: np.ndarray, correct: np.ndarray) -> float:
    """The t with mean(score > t) == mean(correct) on the reference (ATC's calibration)."""
    acc = float(np.mean(correct))
    if acc <= 0.0:
        return float(score.max())
    if acc >= 1.0:
        return float(np.nextafter(score.min(), -np.inf))
    # the (1 - acc) quantile: that fraction of the scores lies at or below it
    return float(np.quantile(score, 1.0 - acc, method="lower"))


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """Temperature minimising the reference's negative log-likelihood (golden-section on
    log T in [-3, 3]); 1.0 when there is nothing to fit."""
    if len(labels) < 20:
        return 1.0
    logp = np.log(np.clip(probs, _EPS, 1.0))
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        z = logp / math.exp(log_t)
        z = z - z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z).sum(axis=1))
        return float(np.mean(lse - z[rows, labels]))

    lo, hi = -3.0, 3.0
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(40):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return float(math.exp((lo + hi) / 2))


def correctness(probs: np.ndarray, calibration: dict, method: str) -> np.ndarray:
    """Per-frame estimated correctness ``[n]`` whose mean is the estimator's estimate: the
    ATC indicator, or the top-1 probability (shifted as DoC shifts it). The monitor's alarm
    accumulates these frame by frame; :func:`estimate_accuracy` averages them."""
    if method not in ESTIMATORS:
        raise ValueError(f"unknown estimator {method!r}; choose from {', '.join(ESTIMATORS)}")
    ts = method.endswith("_ts")
    p = tempered(probs, calibration["temperature"]) if ts else probs
    base = method[:-3] if ts else method
    if base.startswith("atc_"):
        kind = base[4:]
        return (scores(p, kind) > calibration[f"atc_{kind}{'_ts' if ts else ''}"]).astype(
            np.float64)
    top = p.max(axis=-1).astype(np.float64)
    if base == "doc":
        return top + (calibration["accuracy"] - calibration["mean_maxprob"])
    return top


def estimate_accuracy(probs: np.ndarray, calibration: dict, method: str) -> float:
    """Estimated accuracy of the frames whose probabilities are ``probs`` ``[n, K]``.

    ``calibration``: the profile's ``calibration`` dict (reference accuracy, ATC thresholds,
    temperature, reference mean confidences), see :func:`calibrate`.
    """
    return float(correctness(probs, calibration, method).mean())


def calibrate(probs: np.ndarray, labels: np.ndarray) -> dict:
    """Everything the estimators need from the labelled reference, JSON-ready."""
    labels = np.asarray(labels, np.int64)
    correct = probs.argmax(axis=1) == labels
    t = fit_temperature(probs, labels)
    pt = tempered(probs, t)
    return {
        "accuracy": float(correct.mean()),
        "mean_maxprob": float(probs.max(axis=1).mean()),
        "temperature": t,
        "atc_maxprob": atc_threshold(scores(probs, "maxprob"), correct),
        "atc_entropy": atc_threshold(scores(probs, "entropy"), correct),
        "atc_maxprob_ts": atc_threshold(scores(pt, "maxprob"), correct),
        "atc_entropy_ts": atc_threshold(scores(pt, "entropy"), correct),
    }


def interval(estimate: float, n: int, n_reference: int, z: float = 1.96
             ) -> tuple[float, float]:
    """An approximate 95% interval: the window's binomial spread plus the reference's own
    (its accuracy, which the estimator is anchored to, was measured on ``n_reference``
    frames). Estimator bias under a shift is not in it: study.md gives the measured one."""
    p = min(max(estimate, 0.0), 1.0)
    var = p * (1 - p) / max(n, 1) + p * (1 - p) / max(n_reference, 1)
    half = z * math.sqrt(var)
    return max(0.0, p - half), min(1.0, p + half)
