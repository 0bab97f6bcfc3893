"""The one timing harness: warm-up, timed calls, percentiles, interleaved rounds.

Why one: the ladder, ``edgeinfer bench`` and the report tools all time calls; if each has
its own loop, their numbers disagree for reasons nobody can see (one warms up, one does
not; one takes a mean, one a median). Everything that reports a latency comes through
here.

Why interleaved: a ratio of two latencies measured minutes apart on a shared or
throttling CPU says more about the machine than about the code. :func:`interleaved`
times several cases in rounds, rotating their order each round, so that load drift hits
them alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Call = Callable[[], Any]


def summarize(ms: np.ndarray) -> dict[str, float]:
    """p50/p90/p99, mean and min of per-call times in ms, and how many there were."""
    a = np.asarray(ms, np.float64)
    if a.size == 0:
        raise ValueError("no timings to summarize")
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "mean": float(a.mean()),
            "min": float(a.min()), "n": int(a.size)}


def time_calls(fn: Call, n: int) -> np.ndarray:
    """Wall time of ``n`` consecutive calls, in ms each (``perf_counter_ns``)."""
    out = np.empty(n, np.float64)
    clock = time.perf_counter_ns
    for i in range(n):
        t0 = clock()
        fn()
        out[i] = clock() - t0
    return out / 1e6


def warm_up(fn: Call, n: int) -> None:
    """``n`` untimed calls: first calls allocate buffers, fill caches and JIT kernels."""
    for _ in range(n):
        fn()


def interleaved(cases: Mapping[str, Call], runs: Mapping[str, int], warmup: int = 10,
                rounds: int = 5) -> dict[str, np.ndarray]:
    """Warm every case up, then time them in ``rounds`` rounds, rotating the order each round.

    Each case gets ``runs[name]`` timed calls in total, spread evenly over the rounds.
    Returns the per-call times (ms) of each case.
    """
    names = list(cases)
    if not names:
        return {}
    for name in names:
        warm_up(cases[name], warmup)
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    rounds = max(1, min(rounds, min(runs[n] for n in names)))
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            n = runs[name] * (r + 1) // rounds - runs[name] * r // rounds
            chunks[name].append(time_calls(cases[name], n))
    return {n: np.concatenate(c) for n, c in chunks.items()}


def measure(fn: Call, runs: int = 20, warmup: int = 3) -> dict[str, float]:
    """One case alone: :func:`summarize` of ``runs`` timed calls after ``warmup`` calls."""
    warm_up(fn, warmup)
    return summarize(time_calls(fn, runs))


def median_ms(fn: Call, runs: int = 20, warmup: int = 3) -> float:
    """Median ms of one call (after ``warmup`` untimed calls): the single latency figure."""
    return measure(fn, runs, warmup)["p50"]


def paired_ratios(fn: Call, ref: Call, runs: int = 20, warmup: int = 2) -> list[float]:
    """``runs`` ratios fn/ref of single calls made back to back, which goes first
    alternating each round: the two calls of a pair see the same load, so the median ratio
    holds where p50s of separate interleaved chunks drift with it (the detector's
    int8 loop: 0.78-1.28x for one model by chunks, 0.979-0.994x paired, at load 8)."""
    warm_up(fn, warmup)
    warm_up(ref, warmup)
    out = []
    for r in range(runs):
        if r % 2:
            a, b = time_calls(fn, 1), time_calls(ref, 1)
        else:
            b, a = time_calls(ref, 1), time_calls(fn, 1)
        out.append(float(a[0] / b[0]))
    return out


__all__ = ["interleaved", "measure", "median_ms", "paired_ratios", "summarize",
           "time_calls", "warm_up"]


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """(result, wall ms) of one call whose result is needed (a pass over a data set)."""
    clock = time.perf_counter_ns
    t0 = clock()
    out = fn()
    return out, (clock() - t0) / 1e6
