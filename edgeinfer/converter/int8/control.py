"""Accuracy-controlled int8 for a classifier: the one loop's judge
(:func:`edgeinfer.converter.int8.loop.search`) on top-1 agreement with fp32 and the labelled
accuracy drop. Why: plain int8 reports its miss (EfficientNet-Lite0 on photos: 95.7-98.7%,
docs/int8/); the flips left are frames where a few layers' error tips an uncertain decision.

Agreement is judged on its 95% Wilson LOWER bound (0.99 needs 381 held-out frames, all
agreeing: fewer are refused before any work); a frame's error is the total variation between
the probabilities. When no trial meets the target on its bound, the best (never every layer
float) ships if its ESTIMATE meets it (the gate says NOT CERTIFIED), else refused, naming the
trial with the most layers float allowed. A budget without a target ships the capped build
if it raises agreement above plain int8 (convert states it against the default target).
Without a budget, an int8 chosen by the loop that is not faster than fp32 (> 0.9x, the
detector's rule) is refused: int8 in name only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from edgeinfer.converter.int8 import loop
from edgeinfer.converter.int8.loop import LATENCY_RUNS, Pick, latency_cap
from edgeinfer.converter.int8.record import ControlResult, Trial
from edgeinfer.converter.int8.refusal import check_targets, int8_hints, not_faster, refusal
from edgeinfer.errors import ConfigError
from edgeinfer.parity.stats import wilson
from edgeinfer.progress import Progress


class Int8Builder(Protocol):
    """Quantises one model with some layers kept float (``OnnxInt8``, ``TfliteInt8``)."""

    candidates: list[str]
    labels: dict[str, str]  # candidate -> readable layer name

    def __call__(self, keep_float: Sequence[str]) -> bytes: ...


def _tv(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Total variation distance per frame (0 = same probabilities, 1 = disjoint)."""
    return 0.5 * np.abs(a.astype(np.float64) - b.astype(np.float64)).sum(-1)


def control(build: Int8Builder, run: Callable[[bytes, Sequence[np.ndarray]], np.ndarray],
            fp32: bytes, frames: Sequence[np.ndarray], *, heldout: str = "held-out frames",
            min_agreement: float | None = None, max_drop: float | None = None,
            labels: np.ndarray | None = None, max_float: int | None = None,
            latency: Callable[[bytes], float] | None = None, target: str | None = None,
            fmt: str = "onnx", max_latency_ratio: float | None = None,
            say: Progress | None = None) -> tuple[bytes, ControlResult]:
    """Run the loop; returns the chosen model's bytes and the record, or raises ParityError.

    ``run(model, frames)`` gives probabilities; ``fp32`` is the float model (the reference);
    ``frames`` are held out from calibration; ``labels`` (for ``max_drop``, in accuracy
    points as a fraction, e.g. 0.01) are their classes. ``latency(model)`` is the 1-thread
    p50 in ms (optional: the per-step speed cost; required by ``max_latency_ratio``).
    """
    j = Agreement(build, run, fp32, frames, say or (lambda _m: None), heldout, min_agreement,
                  max_drop, labels, latency, max_latency_ratio)
    n = len(j.candidates)
    j.res.max_float = n if max_float is None else max(0, min(max_float, n))
    j.res.target, j.res.fmt = target, fmt
    return loop.search(j, j.res.max_float)


def allowed(n: int, target: float) -> str:
    """What the held-out frames let the loop certify, said before it starts: on 600 frames
    99% (lower bound) allows ONE flip, and EfficientNet-Lite0's loop spent 709 s keeping 49
    of 50 layers float to get there (session 10); the user sees why at the first line."""
    k = -1
    while k + 1 <= n and wilson(n - k - 1, n)[0] >= target:
        k += 1
    if k < 0:
        return (f"int8 control: {n} held-out frames cannot show >= {target:.2%} (95% lower "
                "bound) even with none disagreeing: met at best in estimate (NOT CERTIFIED)")
    return (f"int8 control: >= {target:.2%} (95% lower bound) on {n} held-out frames allows "
            f"at most {k} of them to disagree")


class Agreement:
    """The classifier's judge for :func:`~edgeinfer.converter.int8.loop.search`: top-1
    agreement with fp32 (Wilson lower bound) and the labelled accuracy drop."""

    def __init__(self, build: Int8Builder, run: Callable[[bytes, Sequence[np.ndarray]],
                 np.ndarray], fp32: bytes, frames: Sequence[np.ndarray], say: Progress,
                 heldout: str, min_agreement: float | None, max_drop: float | None,
                 labels: np.ndarray | None, latency: Callable[[bytes], float] | None,
                 max_latency_ratio: float | None) -> None:
        self.t0, self.say, self.build, self.run, self.frames = (time.perf_counter(), say,
                                                                  build, run, frames)
        n = len(frames)
        self.budget_only = (min_agreement is None and max_drop is None
                            and max_latency_ratio is not None)
        check_targets(min_agreement, max_drop, labels, n, heldout, self.budget_only)
        loop.check_budget(max_latency_ratio, latency)
        if self.budget_only and max_latency_ratio is not None and max_latency_ratio >= 1.0:
            # refused before any work: the loop would end at every layer float (no fake int8)
            raise ConfigError(f"--max-latency-ratio {max_latency_ratio:g} without a target "
                              "allows fp32's own latency, so the most accurate model within "
                              "it is fp32: convert without --quantize, or give a budget below "
                              "1 (int8 is about 0.5x fp32) or a target (--min-agreement)")
        self.ref = run(fp32, frames)
        self.top, self.labels, self.latency = self.ref.argmax(-1), labels, latency
        self.acc32 = float((self.top == labels).mean()) if labels is not None else None
        self.candidates = list(build.candidates)
        c, names = len(self.candidates), dict(getattr(build, "labels", {}))
        self.res = ControlResult(min_agreement, max_drop, heldout, n, c, c, latency(fp32) if
                                 latency else None, len(fp32), self.acc32, labels=names,
                                 max_latency_ratio=max_latency_ratio)
        fp32_ms = self.res.fp32_latency_ms
        self.budget = max_latency_ratio * fp32_ms if max_latency_ratio and fp32_ms else None
        self.budget_is_ratio = False  # ms per frame
        if min_agreement is not None:
            say(allowed(n, min_agreement))


    def measure(self, keep: list[str], added: str | None) -> tuple[bytes, Trial, np.ndarray]:
        t = time.perf_counter()
        model = self.build(keep)
        p = self.run(model, self.frames)
        n, same = len(self.frames), int((p.argmax(-1) == self.top).sum())
        acc = float((p.argmax(-1) == self.labels).mean()) if self.labels is not None else None
        r, ok = self.res, not self.budget_only
        if r.min_agreement is not None:
            ok = ok and wilson(same, n)[0] >= r.min_agreement
        if r.max_drop is not None and acc is not None and self.acc32 is not None:
            ok = ok and self.acc32 - acc <= r.max_drop
        s = Trial(list(keep), added, same / n, wilson(same, n), n - same, acc, len(model),
                  self.latency(model) if self.latency else None, ok, time.perf_counter() - t)
        return model, s, _tv(self.ref, p)

    def errors(self, keep: list[str], worst: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        e = _tv(self.ref[worst], self.run(self.build(keep), [self.frames[i] for i in worst]))
        self.res.rank_s += time.perf_counter() - t
        return e

    def figure(self, t: Trial) -> float:
        return t.agreement

    def gains(self, t: Trial, best: Trial) -> bool:
        """Agreement higher, or equal with the accuracy higher."""
        return (t.agreement, t.accuracy or 0.0) > (best.agreement, best.accuracy or 0.0)

    def show(self, t: Trial, linear: bool = False) -> str:
        (lo, hi), r = t.ci95, self.res
        lat = (f", {t.latency_ms:.2f} ms ({t.latency_ms / r.fp32_latency_ms:.2f}x fp32)"
               if t.latency_ms and r.fp32_latency_ms else "")
        acc = f", accuracy {t.accuracy:.2%}" if t.accuracy is not None else ""
        what = f"+ {r.name(t.added)}" if t.added else ("all int8" if not t.kept_float
                                                       else f"{len(t.kept_float)} float")
        return (f"int8 control: {len(t.kept_float)} float ({what}): agreement {t.agreement:.2%}"
                f" [95% CI {lo:.2%}, {hi:.2%}]{acc}, {t.size_bytes / 1e6:.2f} MB{lat}"
                + (" -> target met" if t.meets else "")
                + ("" if t.taken or not linear else " - not taken (no gain)"))

    def cost(self, t: Trial) -> float | None:
        return t.latency_ms

    def note(self, key: str, t: Trial, n: int = 0) -> str:
        r = self.res
        if key == "ranking":
            return (f"int8 control: ranking {r.candidates} layers by the error each causes on "
                    f"the {n} worst of {r.n_heldout} held-out frames")
        if key == "no_gain":
            return (f"int8 control: {n} float layers do not raise agreement above plain "
                    f"int8's {t.agreement:.2%}: not taken")
        if key == "all_float":
            return (f"artifact not written: int8 reaches {t.agreement:.2%} only with every "
                    f"one of the {r.candidates} quantisable layers kept float, which is the "
                    "fp32 model: ship the fp32 artifact (or fp16 TFLite), or ask for less (a "
                    "lower --min-agreement, a lower --max-latency-ratio, or "
                    "--max-float-layers)")
        return refusal(r, t, over_budget=key == "over_budget")

    def settle(self, best: Pick, trials: list[Trial], last: Pick | None = None,
               all_float: Pick | None = None) -> tuple[bytes, ControlResult]:
        """The best trial (never every layer float) when its ESTIMATE meets the target: the
        frames cannot show it, and the gate says NOT CERTIFIED with how many would;
        otherwise refused (FAIL), naming ``last`` when given."""
        r = self.res
        if (last is not None and last[1].agreement > best[1].agreement
                and len(last[1].kept_float) < len(self.candidates)):
            best = last
        if self.budget_only or r.min_agreement is None and r.max_drop is None:
            return loop.finish(self, best, trials)
        b = best[1]
        est = b.agreement >= (r.min_agreement or 0.0) and (
            r.max_drop is None or b.accuracy is None or r.fp32_accuracy is None
            or r.fp32_accuracy - b.accuracy <= r.max_drop)
        if not est and all_float is not None:  # refused there: no fake int8
            return loop.finish(self, all_float, trials)
        if not est:
            worst = (last or best)[1]
            loop.refuse(self, trials, worst, self.note("refusal", worst))
        self.say(f"int8 control: no float layers met the target on its 95% lower bound; the "
                 f"best, {len(b.kept_float)} float at {b.agreement:.2%}, meets it on the "
                 "estimate: the gate judges it (more held-out frames would show it)")
        return loop.finish(self, best, trials)

    def done(self, model: bytes, trials: list[Trial], chosen: Trial
             ) -> tuple[bytes, ControlResult]:
        """Without a budget, refused unless faster than fp32 (the loop's one rule,
        :func:`~edgeinfer.converter.int8.loop.too_slow`: EfficientNet-Lite0 met 99% with 49
        of 50 layers float at 1.35x fp32, 18.58 MB, and was written with a warning)."""
        r, k = self.res, len(chosen.kept_float)
        n = r.candidates
        ratio = (chosen.latency_ms / r.fp32_latency_ms
                 if chosen.latency_ms and r.fp32_latency_ms else None)
        judged = ratio is not None and r.max_latency_ratio is None
        limit = loop.too_slow(ratio, None, k) if judged else None
        if ratio is not None and limit is not None:
            loop.refuse(self, trials, chosen, not_faster(r, chosen, ratio, limit))
        self.say(f"int8 control: {k} of {n} layers kept float ({r.wall_s:.0f} s)")
        if n and k > n // 2 and not judged:
            # the speed rule did not judge it (no latency measure, or a budget was given)
            self.say(f"warning: {k} of {n} layers float leaves little of int8's speed and "
                     "size: cap them with --max-float-layers (the loop then refuses instead), "
                     "lower the target, or ship fp32")
        return model, r


__all__ = ["LATENCY_RUNS", "ControlResult", "Trial", "check_targets", "control", "int8_hints",
           "latency_cap", "refusal"]
