"""The one int8 accuracy-control loop: keep the fewest layers float until a metric vs fp32
meets the target; the classifier's agreement (:mod:`.control`) and the detector's F1
(:mod:`edgeinfer.converter.detect_control`) are its two :class:`Judge` s (the detector's was
a copy: a rule fixed in one had to be fixed twice). NNCF's recipe, on held-out frames:

1. quantise fully; over a latency budget: refused (float layers only add time); meets: done;
2. rank each layer by how much keeping it float alone lowers the error on the
   ``RANK_FRAMES`` worst frames; with a budget, cap the ranked layers float at the most
   within it (:func:`latency_cap`); budget-only: the capped build, if it raises the metric
   (plain int8 when no layer float fits);
3. add the ranked layers one at a time (``LINEAR``); a step that does not raise the metric
   is NOT taken (issue 26: agreement fell 99.60% -> 99.40% while the loop kept making layers
   float); then bisect the ranked layers not tried for the fewest that meet the target
   (each step costs a quantisation and a held-out run);
4. every layer float is the fp32 model: refused; nothing met the target: the judge settles;
5. no budget: a chosen int8 with layers float must run at <= ``FASTER`` x fp32
   (:func:`too_slow`), else each judge refuses in its words (issue 26/28 "no fake int8":
   EfficientNet-Lite0 met 99% with 49 of 50 layers float at 1.35x fp32, 18.58 MB, and was
   written as int8).

Only the chosen model so far is kept (issue 26: 50 models were held for EfficientNet-Lite0).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np

from edgeinfer.converter.int8.record import RANK_FRAMES
from edgeinfer.errors import ConfigError, ParityError
from edgeinfer.progress import Progress

LINEAR = 3  # layers added one at a time before the loop bisects the ranked prefix
LATENCY_RUNS = 20
FASTER = 0.9  # without a budget, a chosen int8 slower than this x fp32 is refused

Pick = tuple[bytes, Any]  # a model and the trial that measured it


class Judge(Protocol):
    """What differs between the loops. ``measure``: build with ``keep`` float and score vs
    fp32 -> model, trial (``kept_float``, ``added``, ``meets``, ``taken``), each frame's error;
    ``errors``: a ranking probe on the ``worst`` frames; ``figure``: agreement or F1; ``gains``:
    a step raises it; ``cost``: latency in ``budget``'s unit; ``note``: a line or a refusal;
    ``settle``: nothing met the target (``last``: the most float allowed; ``all_float``: the
    only hit): ship via :func:`finish` or refuse; ``done``: the chosen's last checks."""

    res: Any
    say: Progress
    t0: float
    candidates: list[str]
    build: Callable[[Sequence[str]], bytes]
    latency: Callable[[bytes], float] | None
    budget: float | None  # the latency budget, in ``cost``'s unit
    budget_is_ratio: bool  # that unit is x fp32 (the detector), not ms (the classifier)
    budget_only: bool  # no target: the most accurate int8 within the budget

    def measure(self, keep: list[str], added: str | None) -> tuple[bytes, Any, np.ndarray]: ...
    def errors(self, keep: list[str], worst: np.ndarray) -> np.ndarray: ...
    def figure(self, t: Any) -> float: ...
    def gains(self, t: Any, best: Any) -> bool: ...
    def cost(self, t: Any) -> float | None: ...
    def show(self, t: Any, linear: bool = False) -> str: ...
    def note(self, key: str, t: Any, n: int = 0) -> str: ...
    def settle(self, best: Pick, trials: list[Any], last: Pick | None = None,
               all_float: Pick | None = None) -> tuple[bytes, Any]: ...
    def done(self, model: bytes, trials: list[Any], chosen: Any) -> tuple[bytes, Any]: ...


def check_budget(max_latency_ratio: float | None, latency: Callable[[bytes], float] | None
                 ) -> None:
    """Refused before any work: a budget needs a positive ratio and a latency to hold it."""
    if max_latency_ratio is not None and (latency is None or not max_latency_ratio > 0):
        raise ConfigError("--max-latency-ratio needs a positive ratio and a latency measure")


def too_slow(ratio: float | None, budget: float | None = None, kept: int = 1) -> float | None:
    """The limit the chosen int8's 1-thread latency ``ratio`` (x fp32, paired) breaks, or
    None: ``budget`` (``--max-latency-ratio``, honoured even >= 1) when given, else ``FASTER``;
    None when no latency was measured, and without a budget when no layer was ``kept`` float
    (all-int8 is what --quantize int8 asks for, not a fake: fashion's plain int8 reads
    0.80-0.83x inside convert, and load alone would refuse it). One rule for both judges.
    Why 0.9, not 1.0: the detector's ONNX int8 met F1 with 11 of 16 layers float at 0.98x
    (fp32 against itself reads 0.994-1.005x): no int8 worth shipping, and a rule at 1.0
    would flip on noise."""
    if budget is None and kept == 0:
        return None
    limit = FASTER if budget is None else budget
    return limit if ratio is not None and ratio > limit else None


def search(j: Judge, cap: int) -> tuple[bytes, Any]:
    """Run the loop (module docstring) with at most ``cap`` layers float."""
    model, s, err = j.measure([], None)
    trials = [s]
    j.say(j.show(s))
    plain = j.cost(s)
    if j.budget is not None and plain is not None and plain > j.budget:
        # checked before the target: a plain int8 that met it was shipped over the budget
        refuse(j, trials, s, j.note("over_budget", s))
    if s.meets:
        return finish(j, (model, s), trials)
    if cap == 0:  # nothing may be kept float: plain int8, judged as it is
        return j.settle((model, s), trials)
    worst = np.argsort(-err)[:RANK_FRAMES]
    j.say(j.note("ranking", s, len(worst)))
    base = float(err[worst].mean())
    scores = [(c, base - float(j.errors([c], worst).mean())) for c in j.candidates]
    j.res.ranking = sorted(scores, key=lambda cs: -cs[1])
    order = [c for c, _ in j.res.ranking]
    if j.budget is not None and plain is not None and j.latency is not None:
        cap = j.res.latency_cap = latency_cap(j.build, j.latency, order, cap, plain, j.budget,
                                              j.say, ratio=j.budget_is_ratio)
        if cap == 0 and j.budget_only:  # no layer float fits, plain int8 does: it is the
            return finish(j, (model, s), trials)  # most accurate int8 within the budget
        if cap == 0:
            refuse(j, trials, s, j.note("no_room", s))
    best: Pick = (model, s)

    def probe(keep: list[str], added: str, rule: Callable[[Any], bool] | None = None,
              linear: bool = False) -> tuple[bytes, Any]:
        m, t, _ = j.measure(keep, added)
        trials.append(t)
        t.taken = t.taken if rule is None else rule(t)
        j.say(j.show(t, linear))
        return m, t

    if j.budget_only:  # no target: the most harmful layers the budget allows stay float
        m, t = probe(order[:cap], order[cap - 1])
        if j.figure(t) > j.figure(s) or cap >= len(order):
            best = (m, t)  # (every layer float is refused by finish)
        else:
            j.say(j.note("no_gain", s, cap))
        return finish(j, best, trials)
    keep: list[str] = []
    for c in order[:min(LINEAR, cap)]:
        m, t = probe(keep + [c], c, lambda t, b=best[1]: t.meets or j.gains(t, b), linear=True)
        if t.taken:
            keep.append(c)
            best = (m, t)
            if t.meets:
                return finish(j, (m, t), trials)
    rest = [c for c in order[:cap] if c not in {t.added for t in trials}]
    if not rest:
        return j.settle(best, trials)
    m, most = probe(keep + rest, rest[-1], lambda t: t.meets)
    if not most.meets:
        return j.settle(best, trials, last=(m, most))
    hit: Pick = (m, most)
    lo, hi = 0, len(rest)  # hi meets; lo does not (0: the taken layers alone)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        m, t = probe(keep + rest[:mid], rest[mid - 1], lambda t: t.meets)  # taken if it meets
        if t.meets:
            hi, hit = mid, (m, t)
        else:
            lo = mid
            if j.figure(t) > j.figure(best[1]):
                best = (m, t)
    if len(hit[1].kept_float) < len(j.candidates):
        return finish(j, hit, trials)
    return j.settle(best, trials, all_float=hit)  # only every layer float meets it


def ordered(trials: list[Any], chosen: Any) -> list[Any]:
    """Trials in the order measured, the chosen one last (the record's ``final``)."""
    return [t for t in trials if t is not chosen] + [chosen]


def refuse(j: Judge, trials: list[Any], chosen: Any, message: str) -> None:
    """Raise the one-line refusal; the loop's record rides along as ``.control`` (the
    study tools read the ranking and the latency cap from it)."""
    j.res.steps = ordered(trials, chosen)
    j.res.wall_s = time.perf_counter() - j.t0
    err = ParityError(message)
    err.control = j.res  # type: ignore[attr-defined]
    raise err


def finish(j: Judge, pick: Pick, trials: list[Any]) -> tuple[bytes, Any]:
    """Record the chosen trial; every layer float is the fp32 model: refused (issue 26: one
    was written, called "onnx int8" by info, and passed)."""
    model, chosen = pick
    j.res.steps = ordered(trials, chosen)
    j.res.wall_s = time.perf_counter() - j.t0
    if j.res.candidates and len(chosen.kept_float) >= j.res.candidates:
        refuse(j, trials, chosen, j.note("all_float", chosen))
    return j.done(model, trials, chosen)


def latency_cap(build: Callable[[Sequence[str]], bytes], latency: Callable[[bytes], float],
                order: list[str], cap: int, plain_ms: float, budget_ms: float,
                say: Progress, ratio: bool = False) -> int:
    """The most best-ranked layers that can be float within ``budget_ms`` (1 thread;
    ``ratio``: the budget and the latencies are ratios to fp32's, the detector's unit).

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
    within = (f"{budget_ms:.2f}x fp32's latency" if ratio else
              f"{budget_ms:.2f} ms per frame")
    say(f"int8 control: at most {lo} of {len(order)} ranked layers float within {within} "
        "(1 thread)")
    return lo
