"""One slow-headers client against `edgeinfer serve`: is everyone else still served? (a script)

    python tools/serve_slow_clients.py [--artifact out/fashion.onnx] [--seconds 30]
        [--slow 600 2000] [--out docs/serve]

The case of issue 30: ``python -m edgeinfer serve`` (a separate process on 127.0.0.1, default
settings but for the guards under test) and, on loopback only:

- a slow client at source address 127.0.0.2 opens N connections, each sending a partial
  request head and one more header line every 2 s; a connection the server ends (408, 503 or
  a plain close) is opened again 1 s later, so the client keeps trying for the whole run;
- a client at 127.0.0.1 sends one real request (a Fashion-MNIST JPEG to ``/predict``, a new
  connection each time) per second for ``--seconds``, starting once the slow connections are
  open; its share answered 200 is the figure.

Each N runs twice, "before" (``--header-timeout 0 --max-connections-per-client 0``: uvicorn's
own behaviour, what main did) and "after" (the defaults), plus, for the smallest N, each
guard alone. Server RSS and open file descriptors are sampled every second. Writes
docs/serve/slow_clients.{json,md} with the CPU flags and load average. Bounded: at most
``max(--slow)`` connections at once, ``--seconds`` + ~15 s per run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from pathlib import Path

import cv2
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import (  # noqa: E402
    REPO,
    Server,
    _stack,
    cpu_flags,
    cpu_model,
    cpu_seconds,
    load,
    rss_mb,
)

from edgeinfer.data.datasets import load_fashion_mnist  # noqa: E402

SLOW_HOST = "127.0.0.2"
TRICKLE_S = 2.0
RECONNECT_S = 1.0
OFF = ("--header-timeout", "0", "--max-connections-per-client", "0")
VARIANTS = {"before (guards off)": OFF, "after (defaults)": (),
            "header timeout only": ("--max-connections-per-client", "0"),
            "per-address cap only": ("--header-timeout", "0")}


def raise_fd_limit(need: int) -> int:
    """Client and server each hold one fd per slow connection; the server inherits this."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need and (hard == resource.RLIM_INFINITY or hard > soft):
        soft = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class SlowClient:
    """N connections from 127.0.0.2 that never finish their request head."""

    def __init__(self, host: str, port: int, n: int, sources: list[str]) -> None:
        self.addr, self.n, self.sources = (host, port), n, sources
        self.stop = asyncio.Event()
        self.opened = self.cut_408 = self.refused_503 = self.closed = self.failed = 0

    async def run(self) -> None:
        await asyncio.gather(*(self._one(i) for i in range(self.n)))

    async def _one(self, i: int) -> None:
        while not self.stop.is_set():
            await self._connection(i)
            if not self.stop.is_set():
                await asyncio.sleep(RECONNECT_S)

    async def _connection(self, i: int) -> None:
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                *self.addr, local_addr=(self.sources[i % len(self.sources)], 0)), timeout=10)
        except (OSError, TimeoutError):
            self.failed += 1
            return
        self.opened += 1
        try:
            writer.write(b"POST /predict HTTP/1.1\r\nHost: edge\r\nContent-Type: image/jpeg\r\n")
            line = 0
            while not self.stop.is_set():
                try:
                    said = await asyncio.wait_for(reader.read(4096), timeout=TRICKLE_S)
                except TimeoutError:
                    writer.write(b"X-Slow-%d: %d\r\n" % (line, i))
                    line += 1
                    continue
                if said.startswith(b"HTTP/1.1 408"):
                    self.cut_408 += 1
                elif said.startswith(b"HTTP/1.1 503"):
                    self.refused_503 += 1
                else:
                    self.closed += 1
                return
        except OSError:
            self.closed += 1
        finally:
            writer.close()


async def legit(url: str, jpeg: bytes, seconds: float) -> list[dict]:
    """One real request per second from 127.0.0.1, each on a new connection."""
    out = []
    t0 = time.monotonic()
    async with httpx.AsyncClient(timeout=5, limits=httpx.Limits(max_keepalive_connections=0)) \
            as c:
        for k in range(int(seconds)):
            await asyncio.sleep(max(0.0, t0 + k - time.monotonic()))
            t = time.monotonic()
            try:
                r = await c.post(f"{url}/predict", content=jpeg,
                                 headers={"Content-Type": "image/jpeg"})
                ok = r.status_code == 200 and bool(r.json()["predictions"])
                res = {"status": r.status_code, "ok": ok}
            except httpx.HTTPError as e:
                res = {"status": type(e).__name__, "ok": False}
            res["at_s"] = round(t - t0, 1)
            res["ms"] = round((time.monotonic() - t) * 1e3, 1)
            out.append(res)
    return out


async def sample(pid: int, stop: asyncio.Event, into: list[dict]) -> None:
    t0 = time.monotonic()
    while not stop.is_set():
        into.append({"t_s": round(time.monotonic() - t0, 1), "rss_mb": round(rss_mb(pid), 1),
                     "fds": open_fds(pid)})
        await asyncio.sleep(1.0)


async def scenario(url: str, pid: int, n: int, sources: list[str], seconds: float,
                   jpeg: bytes) -> dict:
    host, port = url.removeprefix("http://").split(":")
    slow = SlowClient(host, int(port), n, sources)
    samples: list[dict] = []
    done = asyncio.Event()
    sampler = asyncio.create_task(sample(pid, done, samples))
    slow_task = asyncio.create_task(slow.run())
    t0 = time.monotonic()
    # Start the real client once every slow connection has been opened (or ended) once.
    while slow.opened + slow.failed < n and time.monotonic() - t0 < 30:
        await asyncio.sleep(0.2)
    await asyncio.sleep(TRICKLE_S)
    ramp_s = time.monotonic() - t0
    cpu0 = cpu_seconds(pid)
    answers = await legit(url, jpeg, seconds)
    cpu_s = cpu_seconds(pid) - cpu0
    slow.stop.set()
    done.set()
    await asyncio.wait_for(slow_task, timeout=30)
    await sampler
    served = sum(a["ok"] for a in answers)
    statuses: dict[str, int] = {}
    for a in answers:
        statuses[str(a["status"])] = statuses.get(str(a["status"]), 0) + 1
    ms = sorted(a["ms"] for a in answers if a["ok"])
    return {"slow_connections": n, "source_addresses": len(sources),
            "ramp_s": round(ramp_s, 1), "requests": len(answers),
            "served": served, "served_share": round(served / max(1, len(answers)), 3),
            "statuses": statuses,
            "served_ms": {"p50": ms[len(ms) // 2], "max": ms[-1]} if ms else None,
            "server_cpu_s": round(cpu_s, 2),
            "slow_client": {"connections_opened": slow.opened, "cut_408": slow.cut_408,
                            "refused_503": slow.refused_503, "closed_no_answer": slow.closed,
                            "connect_failed": slow.failed},
            "server_rss_mb": {"peak": max(s["rss_mb"] for s in samples),
                              "last": samples[-1]["rss_mb"]},
            "server_fds_peak": max(s["fds"] for s in samples), "answers": answers,
            "samples": samples}


def run(artifact: Path, variant: str, n: int, sources: list[str], seconds: float,
        jpeg: bytes) -> dict:
    srv = Server(artifact, *VARIANTS[variant])
    try:
        pid = srv.proc.pid
        time.sleep(1.0)
        rss0 = rss_mb(pid)
        load0 = load()
        res = asyncio.run(scenario(srv.url, pid, n, sources, seconds, jpeg))
        res["server_rss_mb"]["idle"] = round(rss0, 1)
        res["server_rss_mb"]["growth"] = round(res["server_rss_mb"]["peak"] - rss0, 1)
        res["load_start"], res["load_end"] = load0, load()
    finally:
        res_rc = srv.stop()
    return {"variant": variant, "flags": " ".join(VARIANTS[variant]),
            "exit_status": res_rc, **res}


def _row(r: dict) -> str:
    s, rss, ms = r["slow_client"], r["server_rss_mb"], r["served_ms"]
    st = ", ".join(f"{k}: {v}" for k, v in sorted(r["statuses"].items()))
    lat = f"{ms['p50']:.0f} / {ms['max']:.0f}" if ms else "-"
    flags = f" `{r['flags']}`" if r["flags"] else ""
    return (f"| {r['slow_connections']} from {r['source_addresses']} | {r['variant']}{flags} | "
            f"**{r['served']}/{r['requests']}** | {st} | {lat} | "
            f"{rss['idle']:.0f} / {rss['peak']:.0f} | {r['server_fds_peak']} | "
            f"{r['server_cpu_s']:.1f} | {s['connections_opened']} / {s['cut_408']} / "
            f"{s['refused_503']} / {s['closed_no_answer'] + s['connect_failed']} |")


def markdown(doc: dict) -> str:
    env = doc["env"]
    load0 = ", ".join(f"{v:g}" for v in env["load_start"])
    load1 = ", ".join(f"{v:g}" for v in env["load_end"])
    return "\n".join([
        "# One slow-headers client: is everyone else served?",
        "",
        "Back to [README.md](README.md). Issue 30: one client that never finishes its request "
        "heads held every connection slot of `edgeinfer serve`. Guards: "
        "`--header-timeout` and `--max-connections-per-client` "
        "(`edgeinfer/serve/connections.py`); tests: `tests/serve/test_slow_clients.py`.",
        "",
        f"Run {env['date']}, `python tools/serve_slow_clients.py`, on {env['cpu']} "
        f"({env['cores']} cores shared with other jobs; {', '.join(env['cpu_flags'])}; load "
        f"average {load0} at the start, {load1} at the end; HTTP stack {env['http']}; fd "
        f"limit {env['fd_limit']}). Server: `python -m edgeinfer serve fashion.onnx` on "
        "127.0.0.1 with the defaults (`--max-connections 256`) but the flags named. Slow "
        "client (source 127.0.0.2, or spread over 127.0.0.2-"
        f"127.0.0.{1 + doc['addresses']}): N connections, each "
        f"a partial `POST /predict` head plus one header line every {TRICKLE_S:g} s; a "
        f"connection the server ends is opened again {RECONNECT_S:g} s later, so it keeps "
        "trying all along. Real client (127.0.0.1): one Fashion-MNIST JPEG to `/predict` per "
        f"second, a new connection each, for {doc['seconds']:g} s from the moment every slow "
        "connection was open; served = 200 with predictions. Client and server share the "
        "two cores.",
        "",
        "| slow conns from addresses | server | real client served | answers | served ms "
        "p50 / max | server RSS idle / peak MB | server fds peak | server CPU s | slow "
        "client: connections / 408 / 503 / closed or failed |",
        "|---|---|---|---|---|---|---|---|---|",
        *(_row(r) for r in doc["runs"]),
        "",
        "Per-request answers and per-second RSS/fd samples: "
        "[slow_clients.json](slow_clients.json).",
        "",
        "## Reading it",
        "",
        "- **Before** (uvicorn's own behaviour, what main did): the slow connections hold "
        "uvicorn's global `limit_concurrency` (256) for as long as the client likes, and "
        "every other request is 503. Memory is not what is lost (RSS grows a few MB per "
        "thousand connections): availability is.",
        "- **The per-address cap is what holds one address**: past 64 connections from "
        "127.0.0.2 the next is answered 503 and closed before anything is parsed, so that "
        "address can never hold more than a quarter of the slots. The refused connections "
        "are cheap (server fds stay at the cap; the CPU column includes answering the "
        "reconnecting client's thousands of refusals).",
        "- **The header deadline alone does not hold one address that reconnects**: each "
        "connection is cut with 408 after 10 s, but a client that opens a new one at once "
        "fills the slots again. What it bounds is how long any slot is held, whoever holds "
        "it; with the cap, the 64 held connections are cut every 10 s (the 408s above).",
        "- **Latency of the served requests** (the real client's connect + request + "
        "answer): the slowest ones are measured on the same event loop that drives the slow "
        "client's thousands of reconnections, on the same two cores, so they include that "
        "client's own delays; the two are not separated here. The p50 is the typical cost.",
        "",
        "## What is left to a reverse proxy",
        "",
        "Many addresses at once: N addresses x 64 connections can still fill 256 slots "
        f"(the last row: the same slow client spread over {doc['addresses']} loopback "
        "addresses). The head "
        "deadline frees each slot after 10 s, but a determined client re-fills it. Only a "
        "proxy in front (nginx, Envoy, a cloud load balancer) stops that: it buffers request "
        "heads and bodies before it opens an upstream connection (so slow clients never "
        "reach the server), and it can limit connections and request rates per address and "
        "in total. Behind such a proxy every connection comes from the proxy's address: run "
        "`edgeinfer serve --max-connections-per-client 0` (or a value above the proxy's "
        "upstream connections), and keep `--header-timeout`.",
    ]) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--artifact", type=Path, default=REPO / "out" / "fashion.onnx")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--slow", type=int, nargs="+", default=[600, 2000])
    ap.add_argument("--no-ablation", action="store_true",
                    help="skip the runs with one guard alone")
    ap.add_argument("--addresses", type=int, default=10,
                    help="one more run: the smallest N spread over this many source "
                    "addresses 127.0.0.2.. (what is left to a reverse proxy; 1: skip)")
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "serve")
    ap.add_argument("--markdown-only", action="store_true",
                    help="rewrite slow_clients.md from the existing slow_clients.json")
    args = ap.parse_args()
    if args.markdown_only:
        doc = json.loads((args.out / "slow_clients.json").read_text())
        (args.out / "slow_clients.md").write_text(markdown(doc))
        return 0
    if max(args.slow) > 5000 or not 1 <= args.addresses <= 50:
        ap.error("at most 5000 slow connections and 50 addresses (bounded on purpose)")
    fds = raise_fd_limit(2 * max(args.slow) + 512)
    ims, _ = load_fashion_mnist("test")
    jpeg = cv2.imencode(".jpg", cv2.cvtColor(ims[0], cv2.COLOR_GRAY2BGR))[1].tobytes()
    env = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu_model(),
           "cores": os.cpu_count(), "cpu_flags": cpu_flags(), "load_start": load(),
           "http": _stack(), "fd_limit": fds}
    one, many = [SLOW_HOST], [f"127.0.0.{k}" for k in range(2, 2 + args.addresses)]
    cases = []
    for n in args.slow:
        cases += [(n, "before (guards off)", one), (n, "after (defaults)", one)]
        if n == min(args.slow) and not args.no_ablation:
            cases += [(n, "header timeout only", one), (n, "per-address cap only", one)]
    if args.addresses > 1:
        cases.append((min(args.slow), "after (defaults)", many))
    runs = []
    for n, v, sources in cases:
        r = run(args.artifact, v, n, sources, args.seconds, jpeg)
        print(f"{n:5d} slow from {len(sources)} address(es), {v:22s}: served "
              f"{r['served']}/{r['requests']} {r['served_ms']}, RSS {r['server_rss_mb']}, "
              f"fds {r['server_fds_peak']}, cpu {r['server_cpu_s']} s, "
              f"slow {r['slow_client']}", flush=True)
        runs.append(r)
    env["load_end"] = load()
    doc = {"env": env, "seconds": args.seconds, "addresses": args.addresses, "runs": runs}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "slow_clients.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "slow_clients.md").write_text(markdown(doc))
    print(f"wrote {args.out / 'slow_clients.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
