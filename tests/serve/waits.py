"""Waiting on what the server says, not on the clock.

Why: tests that slept 0.2-1.6 s and assumed the server had got somewhere by then failed on
a loaded machine (the two cores are shared) and passed on an idle one. These helpers poll
the server's own /metrics (or any condition) until it reports the state the test needs;
the only time in them is an upper bound after which the test fails, never a window it
must hit.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable

import httpx

#: Give up (and fail) after this long: far beyond anything a loaded machine needs.
WITHIN_S = 60.0


def metric(text: str, name: str) -> float:
    """A sample of the Prometheus text exposition, e.g. ``edgeinfer_in_flight`` or
    ``edgeinfer_errors_total{type="RequestTimeout"}``; 0 when absent."""
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m[1]) if m else 0.0


async def until_metric(c: httpx.AsyncClient, url: str, name: str, at_least: float = 1.0,
                       within: float = WITHIN_S) -> float:
    """Poll ``url``/metrics until ``name`` is at least ``at_least``; its value."""
    deadline = time.monotonic() + within
    while True:
        value = metric((await c.get(f"{url}/metrics")).text, name)
        if value >= at_least:
            return value
        assert time.monotonic() < deadline, f"{name} never reached {at_least} (now {value})"
        await asyncio.sleep(0.02)


def until(cond: Callable[[], bool], what: str, within: float = WITHIN_S) -> None:
    """Poll ``cond()`` until it holds (fails after ``within`` seconds)."""
    deadline = time.monotonic() + within
    while not cond():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def infer_body_cut_by_the_server(url: str) -> httpx.Response:
    """POST to /v2/models/fashion/infer a body whose second half is sent only once the
    server reports a RequestTimeout in /metrics: the body deadline's 408, without a timed
    window."""
    async def slow() -> httpx.Response:
        async with httpx.AsyncClient(timeout=WITHIN_S) as c:
            async def body():
                yield b'{"inputs": '
                await until_metric(c, url, 'edgeinfer_errors_total{type="RequestTimeout"}')
                yield b"[]}"

            return await c.post(f"{url}/v2/models/fashion/infer", content=body())

    return asyncio.run(slow())
