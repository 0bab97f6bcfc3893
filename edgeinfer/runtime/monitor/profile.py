"""The reference profile: what a deployed model should see, stored in the artifact.

Built once at convert time from the deployed artifact's own probabilities on the parity
frames (labelled frames calibrate the accuracy estimate), it holds no frames, only
summaries: the estimators' calibration, the per-frame correctness level and spread the alarm
is tuned on, predicted-class frequencies, each frame signal's mean, spread and quantiles,
and, when the converter measured them, robustness entries (accuracy under a corruption and
how that corruption moved the frame signals) that let the cause line say what a shift costs.
A few kilobytes of JSON, read with numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeinfer.errors import ModelError
from edgeinfer.runtime.monitor.drift import (
    DEFAULT_ARL0,
    DEFAULT_DROP,
    DEFAULT_MARGIN_SE,
    in_control_level,
    simulated_threshold,
)
from edgeinfer.runtime.monitor.estimate import (
    DEFAULT_ESTIMATOR,
    ESTIMATORS,
    calibrate,
    correctness,
    estimate_accuracy,
)
from edgeinfer.runtime.monitor.frame_stats import FLOORS, FRAME_SIGNALS, frames_stats

PROFILE_VERSION = 1
ALARM_KEYS = ("drop", "arl0", "margin_se", "h")
QUANTILES = 21  # 0, 5, ..., 100 %


@dataclass(frozen=True)
class ReferenceProfile:
    """Summaries of the reference frames; ``to_dict`` is the JSON stored in the artifact."""

    n: int
    labelled: int
    reference_accuracy: float | None
    estimator: str
    calibration: dict[str, float] = field(default_factory=dict)
    #: the chosen estimator's per-frame level on the reference and its spread (the alarm's
    #: in-control mean and sigma)
    level: float = 0.0
    level_std: float = 0.0
    #: 101 quantiles of that per-frame value (the alarm threshold is simulated from them)
    level_q: tuple[float, ...] = ()
    mean_maxprob: float = 0.0
    maxprob_std: float = 0.0
    class_freq: tuple[float, ...] = ()
    signals: dict[str, dict[str, Any]] = field(default_factory=dict)
    robustness: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    color: str = "BGR"
    #: the artifact's ``edgeinfer_moments`` on the reference: per-feature mean and std
    #: (empty when the artifact has no such output)
    features: dict[str, list[float]] = field(default_factory=dict)
    #: the CUSUM threshold for the default alarm settings ({"drop", "arl0", "margin_se",
    #: "h"}), simulated once here so that a Monitor starts without the simulation
    alarm: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"version": PROFILE_VERSION, "n": self.n, "labelled": self.labelled,
                "reference_accuracy": self.reference_accuracy, "estimator": self.estimator,
                "calibration": self.calibration, "level": self.level,
                "level_std": self.level_std, "level_q": list(self.level_q),
                "mean_maxprob": self.mean_maxprob,
                "maxprob_std": self.maxprob_std, "class_freq": list(self.class_freq),
                "signals": self.signals, "robustness": self.robustness, "color": self.color,
                "features": self.features, "alarm": self.alarm}

    @classmethod
    def from_dict(cls, d: Any) -> ReferenceProfile:
        """Parse a stored profile; anything malformed is a ModelError naming the field."""
        try:
            if not isinstance(d, dict):
                raise TypeError("the profile is not a JSON object")
            if d.get("version") != PROFILE_VERSION:
                raise ValueError(f"profile version {d.get('version')!r}; this edgeinfer reads "
                                 f"{PROFILE_VERSION}")
            acc = d["reference_accuracy"]
            est = str(d["estimator"])
            if est not in ESTIMATORS:
                raise ValueError(f"unknown estimator {est!r}")
            cal = {str(k): _num(v, f"calibration.{k}") for k, v in d["calibration"].items()}
            signals = {}
            for name, s in d["signals"].items():
                if name not in FRAME_SIGNALS:
                    raise ValueError(f"unknown frame signal {name!r}")
                q = [_num(v, f"signals.{name}.q") for v in s["q"]]
                signals[name] = {"mean": _num(s["mean"], name), "std": _num(s["std"], name),
                                 "q": q}
            rob = d.get("robustness", {})
            if not isinstance(rob, dict) or not all(isinstance(v, list) for v in rob.values()):
                raise TypeError("robustness is not an object of lists")
            for kind, entries in rob.items():
                for e in entries:
                    _num(e["accuracy"], f"robustness.{kind}.accuracy")
                    {k: _num(v, f"robustness.{kind}.shift") for k, v in e["shift"].items()}
            feats = d.get("features") or {}
            if feats:
                feats = {"mean": [_num(v, "features.mean") for v in feats["mean"]],
                         "std": [_num(v, "features.std") for v in feats["std"]]}
                if len(feats["mean"]) != len(feats["std"]) or min(feats["std"]) <= 0:
                    raise ValueError("features: mean and std differ in length or a std <= 0")
            n, labelled = int(d["n"]), int(d["labelled"])
            if n < 1 or not 0 <= labelled <= n:
                raise ValueError(f"n={n}, labelled={labelled}")
            return cls(n=n, labelled=labelled,
                       reference_accuracy=None if acc is None else _num(acc, "accuracy"),
                       estimator=est, calibration=cal, level=_num(d["level"], "level"),
                       level_std=_num(d["level_std"], "level_std"),
                       level_q=_quantiles(d["level_q"]),
                       mean_maxprob=_num(d["mean_maxprob"], "mean_maxprob"),
                       maxprob_std=_num(d["maxprob_std"], "maxprob_std"),
                       class_freq=tuple(_num(v, "class_freq") for v in d["class_freq"]),
                       signals=signals, robustness=rob, color=str(d.get("color", "BGR")),
                       features=feats,
                       alarm={k: _num(v, f"alarm.{k}") for k, v in (d.get("alarm") or {}).items()
                              if k in ALARM_KEYS})
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            what = f"missing {e}" if isinstance(e, KeyError) else str(e)
            raise ModelError(f"the artifact's monitor profile is damaged: {what[:200]}"
                             ) from None


def _quantiles(v: Any) -> tuple[float, ...]:
    q = tuple(_num(x, "level_q") for x in v)
    if len(q) < 2 or any(b < a for a, b in zip(q, q[1:], strict=False)):
        raise ValueError("level_q is not an ascending list of quantiles")
    return q


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"{what} is {v!r}, not a finite number")
    return float(v)


def signal_summary(stats: np.ndarray) -> dict[str, dict[str, Any]]:
    qs = np.linspace(0, 1, QUANTILES)
    return {name: {"mean": float(col.mean()), "std": max(float(col.std()), FLOORS[name]),
                   "q": [float(v) for v in np.quantile(col, qs)]}
            for name, col in zip(FRAME_SIGNALS, stats.T, strict=True)}


def build_profile(probs: np.ndarray, frames: Sequence[np.ndarray] | None, color: str,
                  labels: np.ndarray | None = None, *, estimator: str | None = None,
                  robustness: dict[str, list[dict[str, Any]]] | None = None,
                  features: np.ndarray | None = None, stats: np.ndarray | None = None
                  ) -> ReferenceProfile:
    """The profile of ``probs`` ``[N, K]`` (the deployed artifact on the reference frames).

    ``labels`` (ints, -1 = unknown) calibrate the accuracy estimate; without them the
    monitor still tracks confidence, class mix and frame signals but estimates no accuracy.
    ``features``: the artifact's moments output on (some of) the reference frames.
    ``stats``: :func:`frames_stats` of ``frames`` when the caller already has them.
    """
    probs = np.asarray(probs, np.float64)
    if probs.ndim != 2 or len(probs) == 0:
        raise ValueError(f"build_profile needs probabilities [N, K]; got {probs.shape}")
    n, k = probs.shape
    method = estimator or DEFAULT_ESTIMATOR
    top = probs.max(axis=1)
    cal: dict[str, float] = {}
    acc = None
    labelled = 0
    c = top
    if labels is not None:
        lab = np.asarray(labels, np.int64)
        # a label past the model's classes means the labels are not this model's: calibrate
        # nothing on them rather than an accuracy of the wrong classes
        known = (lab >= 0) & (lab < k) if lab.max(initial=-1) < k else np.zeros(len(lab), bool)
        labelled = int(known.sum())
        if labelled:
            cal = calibrate(probs[known], lab[known])
            acc = cal["accuracy"]
            c = correctness(probs[known], cal, method)
    freq = np.bincount(probs.argmax(axis=1), minlength=k) / n
    level_q = tuple(float(v) for v in np.quantile(c, np.linspace(0, 1, 101)))
    ic = in_control_level(float(c.mean()), float(c.std()), labelled or n, DEFAULT_MARGIN_SE)
    h = simulated_threshold(np.asarray(level_q), ic, DEFAULT_DROP / 2, DEFAULT_ARL0)
    if stats is None and frames is not None and len(frames):
        stats = frames_stats(frames, color)
    return ReferenceProfile(
        n=n, labelled=labelled, reference_accuracy=acc, estimator=method, calibration=cal,
        level=float(c.mean()), level_std=float(c.std()),
        level_q=level_q,
        alarm={"drop": DEFAULT_DROP, "arl0": DEFAULT_ARL0, "margin_se": DEFAULT_MARGIN_SE,
               "h": h},
        mean_maxprob=float(top.mean()),
        maxprob_std=float(top.std()), class_freq=tuple(float(v) for v in freq),
        signals=signal_summary(stats) if stats is not None else {},
        robustness=robustness or {}, color=color, features=_feature_summary(features))


def _feature_summary(features: np.ndarray | None) -> dict[str, list[float]]:
    """Mean and spread of each moment; the spread floored (a dead channel's is 0) at 1% of
    the feature's typical size, so a change in it reads as a finite number of sigmas."""
    if features is None or len(features) == 0:
        return {}
    f = np.asarray(features, np.float64)
    mean, std = f.mean(axis=0), f.std(axis=0)
    floor = 0.01 * np.abs(f).mean() + 1e-6
    return {"mean": [float(v) for v in mean], "std": [float(v) for v in np.maximum(std, floor)]}


def robustness_entry(profile_signals: dict[str, dict[str, Any]], severity: int,
                     probs: np.ndarray, labels: np.ndarray, stats: np.ndarray
                     ) -> dict[str, Any]:
    """One point of a robustness curve for the profile: the accuracy of the artifact on
    corrupted reference frames, and how far (in reference sigmas) the corruption moved each
    frame signal (``stats``: :func:`frames_stats` of those corrupted frames) - the
    fingerprint the cause line matches an observed shift against."""
    shift = {}
    for name, col in zip(FRAME_SIGNALS, np.asarray(stats).T, strict=True):
        ref = profile_signals.get(name)
        if ref is not None and ref["std"] > 0:
            shift[name] = float((col.mean() - ref["mean"]) / ref["std"])
    acc = float(np.mean(np.asarray(probs).argmax(axis=1) == np.asarray(labels)))
    return {"severity": int(severity), "accuracy": acc, "shift": shift}


__all__ = ["ReferenceProfile", "build_profile", "robustness_entry", "correctness",
           "estimate_accuracy"]
