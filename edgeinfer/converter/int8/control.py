"""Accuracy-controlled int8: keep the fewest layers float until the agreement target holds.

Why: plain post-training int8 reports its miss (EfficientNet-Lite0 on real photos: 95.7-98.7%
top-1 agreement with fp32, docs/int8/), and the flips that remain are frames where a few
layers' quantisation error tips an uncertain decision. NNCF's accuracy control showed the
recipe (``quantize_with_accuracy_control``): quantise fully, rank the quantised layers by
the error each causes on the worst frames, revert the worst to float one at a time until the
metric holds, stop. Here, with onnxruntime's ``nodes_to_exclude`` (ONNX) and
ai-edge-quantizer's NO_QUANTIZE recipe entries (TFLite) behind one ``build(keep_float)``:

1. quantise fully; measure agreement with fp32 on HELD-OUT frames (never calibrated on);
2. if the 95% Wilson lower bound already reaches ``min_agreement`` (and the labelled
   accuracy drop is within ``max_drop``), stop: nothing is kept float;
3. rank every weighted layer by how much keeping it float alone lowers the error (total
   variation between fp32 and int8 probabilities) on the worst held-out frames;
4. with a latency budget (``max_latency_ratio``, x fp32's 1-thread latency), bisect the
   ranked prefix on latency alone for the most layers float that stay within it, and lower
   ``max_float`` to that. A budget without a target ships the capped build when it raises
   agreement above plain int8 (else plain int8): the most accurate int8 within it, whose
   agreement convert then states against the default target (refused only when that is
   every layer float: the fp32 model is no int8);
5. otherwise add the ranked layers one at a time (up to ``LINEAR``); a layer whose step
   does not raise agreement is NOT taken (issue 26: agreement fell 99.60% -> 99.40% while
   the loop kept making layers float, up to all of them); then bisect the remaining ranked
   layers, after those taken, between none and ``max_float``; keep the fewest that meet
   the target. Bisection assumes the agreement grows with the prefix, which holds only
   roughly (EfficientNet-Lite0: 2 layers float 99.0%, 3 layers 98.3%);
6. when no trial meets the target on its lower bound, the best trial (never every layer
   float) is returned if its ESTIMATE meets it - the gate then says NOT CERTIFIED with how
   many frames would show it - and otherwise the loop refuses (FAIL), also with no layer
   allowed float (``max_float=0``) or none to keep float.

Memory: only the chosen model so far is kept; every other build is dropped once measured
(a dict of every candidate, 50 models for EfficientNet-Lite0, before issue 26).

The target is judged on the interval's LOWER bound, so a held-out set too small to show it
(0.99 needs at least 381 frames, all agreeing) is refused before any work. Calibration is
done once per conversion (the builders cache it); each step only re-quantises.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from edgeinfer.converter.int8.record import RANK_FRAMES, ControlResult, Trial
from edgeinfer.converter.int8.refusal import check_targets, int8_hints, refusal
from edgeinfer.errors import ConfigError, ParityError
from edgeinfer.parity.stats import wilson
from edgeinfer.progress import Progress

LINEAR = 3  # layers added one at a time before the loop bisects the ranked prefix
LATENCY_RUNS = 20


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
    say = say or (lambda _m: None)
    t0 = time.perf_counter()
    n = len(frames)
    budget_only = min_agreement is None and max_drop is None and max_latency_ratio is not None
    check_targets(min_agreement, max_drop, labels, n, heldout, budget_only)
    if max_latency_ratio is not None and (latency is None or not max_latency_ratio > 0):
        raise ConfigError("--max-latency-ratio needs a positive ratio and a latency measure")
    if budget_only and max_latency_ratio is not None and max_latency_ratio >= 1.0:
        # refused before any work: the loop would end at every layer float (no fake int8)
        raise ConfigError(f"--max-latency-ratio {max_latency_ratio:g} without a target allows "
                          "fp32's own latency, so the most accurate model within it is fp32: "
                          "convert without --quantize, or give a budget below 1 (int8 is "
                          "about 0.5x fp32) or a target (--min-agreement)")
    ref = run(fp32, frames)
    top = ref.argmax(-1)
    acc32 = float((top == labels).mean()) if labels is not None else None
    cand = list(build.candidates)
    cap = len(cand) if max_float is None else max(0, min(max_float, len(cand)))
    res = ControlResult(min_agreement, max_drop, heldout, n, len(cand), cap,
                        latency(fp32) if latency else None, len(fp32), acc32,
                        labels=dict(getattr(build, "labels", {})), target=target, fmt=fmt,
                        max_latency_ratio=max_latency_ratio)

    def step(keep: list[str], added: str | None) -> tuple[bytes, Trial, np.ndarray]:
        t = time.perf_counter()
        model = build(keep)
        p = run(model, frames)
        same = int((p.argmax(-1) == top).sum())
        acc = float((p.argmax(-1) == labels).mean()) if labels is not None else None
        ok = _meets(same, n, acc, acc32, min_agreement, max_drop) and not budget_only
        s = Trial(list(keep), added, same / n, wilson(same, n), n - same, acc, len(model),
                 latency(model) if latency else None, ok, time.perf_counter() - t)
        return model, s, p

    model, s, p = step([], None)
    res.steps.append(s)
    for line in res.lines():
        say(line)
    if (max_latency_ratio is not None and res.fp32_latency_ms and s.latency_ms is not None
            and s.latency_ms > max_latency_ratio * res.fp32_latency_ms):
        # checked before the target: a plain int8 that met it was shipped over the budget
        _refuse(res, s, t0, over_budget=True)
    if s.meets:
        return _finish(model, res, t0, say)
    if not cand or cap == 0:  # nothing may be kept float: plain int8, judged as it is
        return _settle(model, res, [s], s, t0, say, budget_only)
    err = _tv(ref, p)
    worst = np.argsort(-err)[:RANK_FRAMES]
    say(f"int8 control: ranking {len(cand)} layers by the error each causes on the "
        f"{len(worst)} worst of {n} held-out frames")
    sub = [frames[i] for i in worst]
    base = float(err[worst].mean())
    t = time.perf_counter()
    scores = [(c, base - float(_tv(ref[worst], run(build([c]), sub)).mean())) for c in cand]
    res.rank_s = time.perf_counter() - t
    res.ranking = sorted(scores, key=lambda cs: -cs[1])
    order = [c for c, _ in res.ranking]
    if max_latency_ratio is not None and res.fp32_latency_ms and s.latency_ms is not None:
        cap = res.latency_cap = latency_cap(build, latency, order, cap, s.latency_ms,
                                            max_latency_ratio * res.fp32_latency_ms, say)
        if cap == 0:
            _refuse(res, s, t0)
    # Only the chosen model so far is kept (issue 26: one model per candidate, 50 for
    # EfficientNet-Lite0, were held in memory); every other build is dropped once measured.
    best, best_model, trials = s, model, [s]
    if budget_only:  # no target: the most harmful layers the budget allows stay float
        m, s_cap, _ = step(order[:cap], order[cap - 1])
        trials.append(s_cap)
        say(res.lines_of([s_cap])[0])
        if s_cap.agreement > best.agreement or cap >= len(cand):
            best, best_model = s_cap, m  # (every layer float is refused by _finish)
        else:
            say(f"int8 control: {cap} float layers do not raise agreement above plain int8's "
                f"{s.agreement:.2%}: not taken")
        del m
        return _finish(best_model, res, t0, say, trials, best)
    keep: list[str] = []
    # one layer at a time while few are needed (the usual case); a layer whose step does not
    # raise agreement is not taken (issue 26: agreement fell 99.60% -> 99.40% while the
    # loop kept making layers float, up to all of them)
    for c in order[:min(LINEAR, cap)]:
        m, tr, _ = step(keep + [c], c)
        trials.append(tr)
        tr.taken = _better(tr, best)
        say(res.lines_of([tr])[0] + ("" if tr.taken else " - not taken (no gain)"))
        if tr.taken:
            keep.append(c)
            best, best_model = tr, m
            if tr.meets:
                return _finish(best_model, res, t0, say, trials, best)
        del m
    # then bisect the ranked layers not yet tried, after those taken: O(log n)
    # quantisations instead of n (each costs a build and a held-out run)
    rest = [c for c in order[:cap] if c not in {t.added for t in trials}]
    room = min(len(rest), cap - len(keep))
    if room <= 0:
        return _settle(best_model, res, trials, best, t0, say)
    m, most, _ = step(keep + rest[:room], rest[room - 1])
    most.taken = most.meets
    trials.append(most)
    say(res.lines_of([most])[0])
    if not most.meets:
        if most.agreement > best.agreement and len(most.kept_float) < len(cand):
            best, best_model = most, m
        del m
        return _settle(best_model, res, trials, best, t0, say, refuse_with=most)
    hit, hit_model = most, m
    del m
    lo, hi = 0, room  # hi meets; lo does not (0: the taken layers alone)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        m, tr, _ = step(keep + rest[:mid], rest[mid - 1])
        tr.taken = tr.meets  # a probe: kept only if it meets the target
        trials.append(tr)
        say(res.lines_of([tr])[0])
        if tr.meets:
            hi, hit, hit_model = mid, tr, m
        else:
            lo = mid
            if tr.agreement > best.agreement:
                best, best_model = tr, m
        del m
    if len(hit.kept_float) < len(cand):
        return _finish(hit_model, res, t0, say, trials, hit)
    # only every layer float meets it: the best int8 when its estimate does, else refused
    return _settle(best_model, res, trials, best, t0, say, all_float=(hit_model, hit))


def _better(t: Trial, best: Trial) -> bool:
    """A step is taken only if it meets the target where the last did not, or raises
    agreement (or, agreement equal, accuracy)."""
    if t.meets != best.meets:
        return t.meets
    if t.agreement != best.agreement:
        return t.agreement > best.agreement
    return t.accuracy is not None and best.accuracy is not None and t.accuracy > best.accuracy


def _settle(model: bytes, res: ControlResult, trials: list[Trial], best: Trial, t0: float,
            say: Progress, budget_only: bool = False, refuse_with: Trial | None = None,
            all_float: tuple[bytes, Trial] | None = None) -> tuple[bytes, ControlResult]:
    """No trial met the target on its lower bound. The best one (never every layer float)
    is returned when its ESTIMATE meets the target: the frames cannot show it, and the gate
    says NOT CERTIFIED with how many would; otherwise the loop refuses (FAIL)."""
    if budget_only or res.min_agreement is None and res.max_drop is None:
        return _finish(model, res, t0, say, trials, best)
    est = best.agreement >= (res.min_agreement or 0.0) and (
        res.max_drop is None or best.accuracy is None or res.fp32_accuracy is None
        or res.fp32_accuracy - best.accuracy <= res.max_drop)
    if not est and all_float is not None:  # refused there: no fake int8
        return _finish(all_float[0], res, t0, say, trials, all_float[1])
    if not est:
        res.steps = _ordered(trials, refuse_with or best)
        _refuse(res, refuse_with or best, t0)
    say(f"int8 control: no float layers met the target on its 95% lower bound; the best, "
        f"{len(best.kept_float)} float at {best.agreement:.2%}, meets it on the estimate: "
        "the gate judges it (more held-out frames would show it)")
    return _finish(model, res, t0, say, trials, best)


def _ordered(trials: list[Trial], chosen: Trial) -> list[Trial]:
    """Trials in the order measured, the chosen one last (``ControlResult.final``)."""
    return [t for t in trials if t is not chosen] + [chosen]


def _refuse(res: ControlResult, s: Trial, t0: float, over_budget: bool = False) -> None:
    """Raise the one-line refusal; the loop's record rides along as ``.control`` (the
    study tools read the ranking and the latency cap from it)."""
    res.wall_s = time.perf_counter() - t0
    err = ParityError(refusal(res, s, over_budget))
    err.control = res  # type: ignore[attr-defined]
    raise err


def latency_cap(build: Int8Builder, latency: Callable[[bytes], float], order: list[str],
                cap: int, plain_ms: float, budget_ms: float, say: Progress) -> int:
    """The most best-ranked layers that can be float within ``budget_ms`` (1 thread).

    Latency grows with the float layers, roughly: bisect on it alone (a build and a timing
    per probe, no held-out run); 0 when plain int8 is already over the budget.
    """
    if plain_ms > budget_ms:
        return 0
    lo, hi = 0, cap + 1  # lo fits the budget; hi is taken not to
    if latency(build(order[:cap])) <= budget_ms:
        lo = cap
    while hi - lo > 1 and lo < cap:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if latency(build(order[:mid])) <= budget_ms else (lo, mid)
    say(f"int8 control: at most {lo} of {len(order)} ranked layers float within "
        f"{budget_ms:.2f} ms per frame (1 thread)")
    return lo


def _finish(model: bytes, res: ControlResult, t0: float, say: Progress,
            trials: list[Trial] | None = None,
            chosen: Trial | None = None) -> tuple[bytes, ControlResult]:
    if trials is not None and chosen is not None:
        res.steps = _ordered(trials, chosen)
    res.wall_s = time.perf_counter() - t0
    k = len(res.final.kept_float)
    if res.candidates and k >= res.candidates:
        # No fake int8: with every weighted layer float the file is the fp32 model (issue 26:
        # one was written, called "onnx int8" by info, and passed).
        err = ParityError(
            f"artifact not written: int8 reaches {res.final.agreement:.2%} only with every "
            f"one of the {res.candidates} quantisable layers kept float, which is the fp32 "
            "model: ship the fp32 artifact (or fp16 TFLite), or ask for less (a lower "
            "--min-agreement, a lower --max-latency-ratio, or --max-float-layers)")
        err.control = res  # type: ignore[attr-defined]
        raise err
    say(f"int8 control: {k} of {res.candidates} layers kept float ({res.wall_s:.0f} s)")
    if res.candidates and k > res.candidates // 2:
        # EfficientNet-Lite0 on photos: 50 of 50 for 0.99 on 600 photos (docs/int8/control.md)
        say(f"warning: {k} of {res.candidates} layers float leaves little of int8's speed "
            "and size: cap them with --max-float-layers (the loop then refuses instead), "
            "lower the target, or ship fp32")
    return model, res


def _meets(same: int, n: int, acc: float | None, acc32: float | None,
           min_agreement: float | None, max_drop: float | None) -> bool:
    ok = True
    if min_agreement is not None:
        ok = wilson(same, n)[0] >= min_agreement
    if max_drop is not None and acc is not None and acc32 is not None:
        ok = ok and acc32 - acc <= max_drop
    return ok


__all__ = ["ControlResult", "Trial", "check_targets", "control", "int8_hints",
           "latency_cap", "refusal"]
