"""`python -m edgeinfer serve` as a process: SIGTERM during load lets in-flight requests
finish, refuses new connections, and the process exits 0.

The request in flight at SIGTERM is one the server has admitted (its metrics say so) whose
body is held back until the drain has been seen, so no sleep decides whether it was."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys

import httpx

from tests.serve.waits import until_metric


def test_sigterm_during_load_drains_and_exits_0(fashion_artifact, jpegs) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "edgeinfer", "serve", str(fashion_artifact),
                             "--port", "0"], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stderr.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line)[0]
        statuses = asyncio.run(_load_then_sigterm(url, proc, jpegs))
        rc = proc.wait(timeout=30)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, err
    assert "Traceback" not in err
    assert statuses["slow"] == 200  # in flight at SIGTERM (its body still arriving): finished
    assert statuses["before"] and all(s == 200 for s in statuses["before"])
    # after SIGTERM: answered (200, or 503 while draining) or refused; never an error status
    assert all(s in (200, 503, "refused") for s in statuses["after"])
    assert "refused" in statuses["after"]


async def _load_then_sigterm(url: str, proc: subprocess.Popen, jpegs: list[bytes]) -> dict:
    async with httpx.AsyncClient(base_url=url, timeout=20) as c:
        for _ in range(1000):  # an upper bound only: it stops once the server is ready
            try:
                if (await c.get("/v2/health/ready")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
        before = await asyncio.gather(*(c.post("/predict", content=jpegs[i % 6])
                                        for i in range(16)))

        release = asyncio.Event()

        async def slow_body():  # the rest once a new client was refused (or 100 tries)
            yield jpegs[0][:100]
            await release.wait()
            yield jpegs[0][100:]

        slow = asyncio.create_task(c.post("/predict", content=slow_body()))
        await until_metric(c, url, "edgeinfer_in_flight")  # admitted, its body still arriving
        proc.send_signal(signal.SIGTERM)
        after: list = []
        while proc.poll() is None and len(after) < 2000:
            if len(after) >= 100 or "refused" in after:
                release.set()
            try:  # a fresh connection each time: new clients must be turned away
                async with httpx.AsyncClient(base_url=url, timeout=5) as fresh:
                    after.append((await fresh.post("/predict", content=jpegs[1])).status_code)
            except httpx.TransportError:
                after.append("refused")
            await asyncio.sleep(0.02)
        release.set()
        return {"before": [r.status_code for r in before], "slow": (await slow).status_code,
                "after": after}
