"""Monitor: watches a deployed model's predictions and frames, without labels.

    from edgeinfer import Predictor

    p = Predictor("fashion.onnx", monitor=True)      # the artifact's reference profile
    for frame in camera:
        p.predict(frame)
    print(p.monitor.report().summary())
    # monitor: 1200 frames, estimated 71.2% [68.4, 74.0] (reference 91.8%): ALARM - frames
    # 2.1 sigma darker than the parity data; darkness alone costs 15 points ...

``update`` costs a few microseconds plus the frame statistics (tens of microseconds, on
every ``stats_every``-th frame): it writes into preallocated ring buffers and steps the
CUSUM; windows are summarised only in ``report`` (and every ``every`` frames for the
timeline). Thread-safe: a lock guards the state, so server threads may share one Monitor.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgeinfer.errors import ConfigError, positive_int
from edgeinfer.runtime.monitor.cause import explain
from edgeinfer.runtime.monitor.drift import (
    CLASS_MIX_BAR,
    DEFAULT_ARL0,
    DEFAULT_DROP,
    DEFAULT_MARGIN_SE,
    EFFECT_BAR,
    Cusum,
    class_mix_z,
    effect,
    in_control_level,
)
from edgeinfer.runtime.monitor.estimate import correctness, interval
from edgeinfer.runtime.monitor.frame_stats import FRAME_SIGNALS, frame_stats
from edgeinfer.runtime.monitor.profile import ReferenceProfile

#: timeline points kept (one every ``every`` frames)
TIMELINE = 20_000
#: fewest frames an alarm's estimate and cause are read from
MIN_SEGMENT = 30


def _recent(buf: np.ndarray, count: int, total: int) -> np.ndarray:
    """The last ``count`` entries written to the ring buffer ``buf`` after ``total`` writes."""
    size = len(buf)
    if total <= size:
        return buf[total - count:total]
    end = total % size
    idx = (np.arange(end - count, end)) % size
    return buf[idx]


@dataclass(frozen=True)
class MonitorReport:
    """The monitor's state; ``to_dict`` is the JSON of the CLI, the server and the docs."""

    frames: int
    window: int
    estimated_accuracy: float | None
    interval: tuple[float, float] | None
    reference_accuracy: float | None
    estimator: str
    alarm: bool
    alarms: int
    first_alarm_frame: int | None
    cusum: float
    drift: dict[str, float]
    drifted: list[str]
    cause: str | None
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["interval"] = list(self.interval) if self.interval else None
        return d

    def summary(self) -> str:
        """One line for logs and the CLI."""
        head = f"monitor: {self.frames} frames"
        if self.estimated_accuracy is not None and self.interval is not None:
            lo, hi = self.interval
            head += (f", estimated {self.estimated_accuracy:.1%} [{lo:.1%}, {hi:.1%}] "
                     f"(reference {self.reference_accuracy:.1%})")
        else:
            head += ", accuracy not estimated (the profile has no labelled frames)"
        if self.alarm:
            return f"{head}: ALARM - {self.cause}"
        tail = f"; drifted: {', '.join(self.drifted)}" if self.drifted else ""
        return f"{head}: ok{tail}"


class Monitor:
    """Estimated accuracy, drift per signal and an alarm over a stream of predictions.

    ``window``: frames summarised by ``report`` (estimate, drift, cause). ``drop``: the fall
    in accuracy the alarm is tuned to catch (0.10 = 10 points). ``arl0``: average number of
    healthy frames between false alarms. ``every``: frames between timeline points.
    ``stats_every``: frame statistics on one frame in this many (1 = all).
    ``sample_every``: callers that ask :meth:`wants` feed one frame in this many (for a model
    so fast that even microseconds count: docs/monitor/overhead.md). ``margin_se``:
    the alarm's in-control level is the reference level less this many of its standard
    errors (the reference is a sample; study.md measured 1 and 2 on the tune shifts).
    """

    def __init__(self, profile: ReferenceProfile | dict, *, window: int = 300,
                 drop: float = DEFAULT_DROP, arl0: float = DEFAULT_ARL0, every: int = 50,
                 stats_every: int = 1, labels: Sequence[str] = (),
                 margin_se: float = DEFAULT_MARGIN_SE,
                 sample_every: int = 1) -> None:
        if isinstance(profile, dict):
            profile = ReferenceProfile.from_dict(profile)
        positive_int("window", window)
        positive_int("every", every)
        positive_int("stats_every", stats_every)
        positive_int("sample_every", sample_every)
        self.sample_every = sample_every
        self._calls = 0
        if not 0 < drop < 1 or arl0 < 10:
            raise ConfigError(f"drop must be in (0, 1) and arl0 >= 10; got {drop}, {arl0}")
        self.profile = profile
        self.labels = tuple(labels)
        self._window, self._every, self._stats_every = window, every, stats_every
        self._drop, self._arl0, self._margin = drop, arl0, margin_se
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget everything seen (after the camera was fixed, say)."""
        w = self._window
        p = self.profile
        with self._lock:
            self._c = np.zeros(w)
            self._top = np.zeros(w)
            self._cls = np.zeros(w, np.int64)
            # twice the window: on an alarm, the frames before the change are compared too
            self._stats = np.zeros((2 * w, len(FRAME_SIGNALS)))
            self._n = 0
            self._n_stats = 0
            nf = len(p.features.get("mean", ()))
            self._feats = np.zeros((w, nf))
            self._n_feats = 0
            ic = in_control_level(p.level, p.level_std, p.labelled or p.n, self._margin)
            stored = p.alarm
            h = stored["h"] if stored and (stored.get("drop"), stored.get("arl0"),
                                           stored.get("margin_se")) == (
                self._drop, self._arl0, self._margin) else None
            self._cusum = Cusum(np.asarray(p.level_q), ic, self._drop, self._arl0, h)
            self._alarm = False
            self._alarms = 0
            self._first_alarm: int | None = None
            self._timeline: deque[dict[str, Any]] = deque(maxlen=TIMELINE)

    def wants(self) -> bool:
        """True for one call in ``sample_every``: whether the caller should feed this frame
        (the count is not locked: under threads the sampling is approximate, by design)."""
        self._calls += 1
        return self.sample_every == 1 or self._calls % self.sample_every == 1

    def takes_stats(self) -> bool:
        """Whether the next frame fed gets frame statistics (one in ``stats_every``): the
        feature moments, which cost an extra model output, are asked for on those only."""
        return self._n % self._stats_every == 0

    @property
    def alarm(self) -> bool:
        return self._alarm

    @property
    def frames(self) -> int:
        return self._n

    def update(self, probs: np.ndarray, frames: Sequence[np.ndarray] | np.ndarray | None = None,
               *, stats: np.ndarray | None = None, features: np.ndarray | None = None
               ) -> None:
        """Feed the probabilities ``[K]`` or ``[n, K]`` of predicted frames, and optionally
        the raw uint8 frames themselves (in the profile's colour order) for the signals, or
        their :func:`frame_stats` rows already computed (``stats``); ``features``: the
        artifact's moments output for these frames, when it has one."""
        probs = np.asarray(probs)
        if probs.ndim == 1:  # one frame: its probabilities, and the frame itself if given
            probs = probs[None]
            if isinstance(frames, np.ndarray) and frames.ndim in (2, 3):
                frames = [frames]
        if probs.ndim != 2:
            raise ConfigError(f"monitor.update takes probabilities [K] or [n, K]; got "
                              f"{probs.shape}")
        p = self.profile
        c = correctness(probs, p.calibration, p.estimator) if p.calibration else probs.max(1)
        top, cls = probs.max(axis=1), probs.argmax(axis=1)
        rows = [] if stats is None else list(np.asarray(stats, np.float64).reshape(
            -1, len(FRAME_SIGNALS)))
        if frames is not None and stats is None and p.signals:
            for j, f in enumerate(frames):
                if (self._n + j) % self._stats_every == 0:
                    rows.append(frame_stats(f, p.color))
        with self._lock:
            w = self._window
            for j in range(len(probs)):
                i = self._n % w
                self._c[i], self._top[i], self._cls[i] = c[j], top[j], cls[j]
                self._n += 1
                self._step(c[j:j + 1])
            for r in rows:
                self._stats[self._n_stats % (2 * w)] = r
                self._n_stats += 1
            if features is not None and self._feats.shape[1]:
                for r in np.asarray(features, np.float64).reshape(-1, self._feats.shape[1]):
                    self._feats[self._n_feats % w] = r
                    self._n_feats += 1

    def _step(self, c: np.ndarray) -> None:
        alarm = self._cusum.update(c)
        if alarm and not self._alarm:
            self._alarms += 1
            if self._first_alarm is None:
                self._first_alarm = self._n
        self._alarm = alarm
        if self._n % self._every == 0:
            est, iv = self._estimate()
            self._timeline.append({"frame": self._n, "estimated_accuracy": est,
                                   "low": iv[0] if iv else None,
                                   "high": iv[1] if iv else None, "alarm": alarm,
                                   "cusum": self._cusum.score})

    def _span(self) -> int:
        """Frames the estimate and the cause read: the window, or on an alarm the frames
        since the change CUSUM dates (at least MIN_SEGMENT), so that a fresh shift is not
        diluted by the healthy frames before it."""
        m = min(self._n, self._window)
        if self._alarm:
            m = min(m, max(self._cusum.run, MIN_SEGMENT))
        return m

    def _estimate(self) -> tuple[float | None, tuple[float, float] | None]:
        p = self.profile
        m = self._span()
        if p.reference_accuracy is None or m == 0:
            return None, None
        est = float(np.clip(_recent(self._c, m, self._n).mean(), 0.0, 1.0))
        return est, interval(est, m, p.labelled)

    def _change_effects(self, post: int) -> dict[str, float] | None:
        """On an alarm: how each frame signal moved from the frames before the change that
        CUSUM dates to the frames after it (in reference sigmas). What moved *when the
        accuracy fell* is the cause; a camera that always differed from the parity data
        (another resolution, say) is drift, reported, but not the culprit of this fall.
        None when fewer than MIN_SEGMENT frames precede the change."""
        n = self._n_stats
        change = n - min(n, -(-self._cusum.run // self._stats_every))  # first shifted row
        post = min(post, n - change)
        lag = n - change - post  # shifted rows older than the ones compared
        pre = min(change, 2 * self._window - post - lag, self._window)
        if post < 1 or pre * self._stats_every < MIN_SEGMENT:
            return None
        rows = _recent(self._stats, pre + lag + post, n)
        before, after = rows[:pre], rows[pre + lag:]
        out = {}
        for j, name in enumerate(FRAME_SIGNALS):
            ref = self.profile.signals.get(name)
            if ref is not None:
                out[name] = float((after[:, j].mean() - before[:, j].mean()) / ref["std"])
        return out

    def report(self, timeline: bool = False) -> MonitorReport:
        """The state now: estimate over the last ``window`` frames, drift, alarm, cause."""
        p = self.profile
        with self._lock:
            m = self._span()
            est, iv = self._estimate()
            drift: dict[str, float] = {}
            if m:
                cls = _recent(self._cls, m, self._n)
                drift["confidence"] = effect(_recent(self._top, m, self._n), p.mean_maxprob,
                                             p.maxprob_std)
                drift["class_mix"] = class_mix_z(cls, np.asarray(p.class_freq), p.n)
                freq = np.bincount(cls, minlength=len(p.class_freq)) / m
            else:
                freq = np.zeros(len(p.class_freq))
            ms = min(self._n_stats, -(-m // self._stats_every))
            effects = {}
            if ms:
                rows = _recent(self._stats, ms, self._n_stats)
                for j, name in enumerate(FRAME_SIGNALS):
                    ref = p.signals.get(name)
                    if ref is not None:
                        effects[name] = effect(rows[:, j], ref["mean"], ref["std"])
            drift.update(effects)
            mf = min(self._n_feats, -(-m // self._stats_every))  # fed with the statistics
            if mf and p.features:
                f = _recent(self._feats, mf, self._n_feats).mean(axis=0)
                drift["features"] = float(np.mean(np.abs(
                    (f - np.asarray(p.features["mean"])) / np.asarray(p.features["std"]))))
            drifted = [s for s, v in drift.items()
                       if abs(v) >= (CLASS_MIX_BAR if s == "class_mix" else EFFECT_BAR)]
            changed = self._change_effects(ms) if self._alarm else None
            versus = (f"before the fall (frame {self._n - self._cusum.run})" if changed
                      else "the parity data")
            cause = (explain(changed or effects, drift.get("class_mix", 0.0), freq, p,
                             self.labels, est, versus)
                     if self._alarm or drifted else None)
            return MonitorReport(
                frames=self._n, window=m, estimated_accuracy=est, interval=iv,
                reference_accuracy=p.reference_accuracy, estimator=p.estimator,
                alarm=self._alarm, alarms=self._alarms, first_alarm_frame=self._first_alarm,
                cusum=self._cusum.score, drift=drift, drifted=drifted, cause=cause,
                timeline=list(self._timeline) if timeline else [])
