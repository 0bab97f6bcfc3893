"""Load and soak measurements of `edgeinfer serve` on loopback (a script, not a unit test).

    python tools/serve_load.py --out docs/serve [--artifacts DIR] [--quick]

For fashion and EfficientNet-Lite0 (converted on the fly unless --artifacts has them):
1. in-process baseline: ``Predictor.predict(jpeg)`` one call after another (p50/p99);
2. one client through the server (same images, binary BYTES input, classification
   output): p50/p99, and the server's overhead over the in-process call as a ratio;
3. 32 concurrent clients, bounded by count and time, without and with micro-batching:
   throughput, p50/p99, errors (a wrong top-1 counts as an error), mean frames per
   backend call (from the server's own /metrics);
4. soak: 10,000 requests on fashion with 32 clients, the server's RSS at start, middle, end.

The server runs as a separate process (``python -m edgeinfer serve``); the client is
httpx's async client in this process, on the same machine: client and server share the
CPUs, which is stated in the report along with the CPU flags and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeinfer.datasets import load_fashion_mnist, sample_photos  # noqa: E402
from edgeinfer.runtime.predictor import Predictor  # noqa: E402

CLIENTS = 32


def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text()
    return sorted(set(re.findall(r"\b(avx2|avx512f|avx512_vnni|avx_vnni|amx_tile)\b", text)))


def cpu_model() -> str:
    m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    return m[1].strip() if m else platform.processor()


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m[1]) / 1024


def images(model: str) -> list[bytes]:
    """Real images as JPEG: Fashion-MNIST test frames, or the six real photos."""
    if model == "fashion":
        ims, _ = load_fashion_mnist("test")
        frames = [cv2.cvtColor(im, cv2.COLOR_GRAY2BGR) for im in ims[:64]]
    else:
        frames = list(sample_photos().values())
    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in frames]


def infer_body(jpeg: bytes) -> tuple[bytes, str]:
    """A tritonclient-style request: binary BYTES input, top-1 classification as JSON."""
    blob = len(jpeg).to_bytes(4, "little") + jpeg
    head = json.dumps({"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [1],
                                   "parameters": {"binary_data_size": len(blob)}}],
                       "outputs": [{"name": "probs", "parameters": {"classification": 1}}]})
    return head.encode() + blob, str(len(head))


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else float("nan")


def baseline(path: Path, jpegs: list[bytes], threads: int, n: int) -> dict:
    pred = Predictor(path, threads=threads)
    for j in jpegs:
        pred.predict(j)
    lat = []
    for i in range(n):
        t = time.perf_counter()
        pred.predict(jpegs[i % len(jpegs)], top_k=1)
        lat.append((time.perf_counter() - t) * 1e3)
    return {"requests": n, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99),
            "throughput_rps": round(1e3 / float(np.mean(lat)), 1)}


class Server:
    """``python -m edgeinfer serve`` on a free loopback port, stopped with SIGTERM."""

    def __init__(self, path: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgeinfer", "serve", str(path), "--port", "0", *extra],
            stderr=subprocess.PIPE, text=True, cwd=REPO)
        line = self.proc.stderr.readline()
        m = re.search(r"http://127\.0\.0\.1:\d+", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"server did not start: {line}{self.proc.stderr.read()}")
        self.url = m[0]
        for _ in range(200):
            try:
                if httpx.get(f"{self.url}/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)

    def batch_mean(self, model: str) -> float:
        text = httpx.get(f"{self.url}/metrics").text
        s = float(re.search(rf'edgeinfer_batch_frames_sum{{model="{model}"}} (\S+)', text)[1])
        c = float(re.search(rf'edgeinfer_batch_frames_count{{model="{model}"}} (\S+)', text)[1])
        return round(s / c, 2) if c else 0.0

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=60)
        self.proc.stderr.read()
        return rc


async def drive(url: str, model: str, bodies: list[tuple[bytes, str]], want: list[int],
                clients: int, total: int, seconds: float, on_progress=None) -> dict:
    """``clients`` concurrent loops until ``total`` requests or ``seconds`` have passed."""
    lat: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        async def worker() -> None:
            nonlocal sent
            while sent < total and time.perf_counter() < deadline:
                i = sent % len(bodies)
                sent += 1
                body, hl = bodies[i]
                t = time.perf_counter()
                try:
                    r = await c.post(f"/v2/models/{model}/infer", content=body,
                                     headers={"inference-header-content-length": hl})
                except httpx.TransportError as e:
                    errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
                    continue
                lat.append((time.perf_counter() - t) * 1e3)
                if r.status_code != 200:
                    errors[str(r.status_code)] = errors.get(str(r.status_code), 0) + 1
                elif int(r.json()["outputs"][0]["data"][0].split(":")[1]) != want[i]:
                    errors["wrong top-1"] = errors.get("wrong top-1", 0) + 1
                if on_progress is not None:
                    on_progress(len(lat))

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return {"clients": clients, "requests": len(lat), "seconds": round(wall, 2),
            "throughput_rps": round(len(lat) / wall, 1), "p50_ms": pct(lat, 50),
            "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99), "errors": errors}


def run_model(path: Path, name: str, quick: bool, threads: int, workers: int) -> dict:
    jpegs = images(name)
    pred = Predictor(path, threads=threads)
    want = [pred.predict(j, top_k=1)[0].index for j in jpegs]
    bodies = [infer_body(j) for j in jpegs]
    fast = name == "fashion"
    n_base = 400 if fast else 60
    total = (300 if quick else 3000) if fast else (60 if quick else 600)
    out: dict = {"model": name, "images": len(jpegs), "load_before": load()}
    out["in_process"] = baseline(path, jpegs, threads, n_base)
    common = ("--threads", str(threads), "--workers", str(workers), "--max-queue", "256")
    for label, extra in (("no_batching", ()),
                         ("micro_batching", ("--max-batch", "8", "--batch-window-ms", "2"))):
        srv = Server(path, *common, *extra)
        try:
            asyncio.run(drive(srv.url, name, bodies, want, 4, 40, 30))  # warm-up
            single = asyncio.run(drive(srv.url, name, bodies, want, 1, n_base, 60))
            load32 = asyncio.run(drive(srv.url, name, bodies, want, CLIENTS, total, 90))
            load32["mean_frames_per_call"] = srv.batch_mean(name)
        finally:
            rc = srv.stop()
        out[label] = {"single_client": single, "clients_32": load32, "exit_code": rc,
                      "server_args": list(common + extra)}
        print(f"  {name} {label}: 1 client p50 {single['p50_ms']} ms; 32 clients "
              f"{load32['throughput_rps']} req/s p50 {load32['p50_ms']} p99 "
              f"{load32['p99_ms']} ms errors {load32['errors']}", file=sys.stderr)
    base = out["in_process"]["p50_ms"]
    out["overhead_ratio_single_client_p50"] = round(
        out["no_batching"]["single_client"]["p50_ms"] / base, 2)
    out["throughput_ratio_32_clients_vs_in_process"] = {
        k: round(out[k]["clients_32"]["throughput_rps"] / out["in_process"]["throughput_rps"], 2)
        for k in ("no_batching", "micro_batching")}
    out["load_after"] = load()
    return out


def soak(path: Path, total: int, threads: int, workers: int) -> dict:
    jpegs = images("fashion")
    pred = Predictor(path, threads=threads)
    want = [pred.predict(j, top_k=1)[0].index for j in jpegs]
    bodies = [infer_body(j) for j in jpegs]
    srv = Server(path, "--threads", str(threads), "--workers", str(workers))
    samples: dict[str, float] = {}
    try:
        asyncio.run(drive(srv.url, "fashion", bodies, want, 4, 200, 30))
        samples["start"] = rss_mb(srv.proc.pid)

        def progress(done: int) -> None:
            if done == total // 2 and "middle" not in samples:
                samples["middle"] = rss_mb(srv.proc.pid)

        res = asyncio.run(drive(srv.url, "fashion", bodies, want, CLIENTS, total, 600,
                                progress))
        samples["end"] = rss_mb(srv.proc.pid)
    finally:
        rc = srv.stop()
    res["rss_mb"] = {k: round(v, 1) for k, v in samples.items()}
    res["rss_growth_mb"] = round(samples["end"] - samples["start"], 1)
    res["exit_code"] = rc
    return res


def markdown(doc: dict) -> str:
    env = doc["environment"]
    lines = ["# `edgeinfer serve` under load (loopback)", "",
             f"Run {doc['date']} on {env['cpu']} ({env['cpus']} CPUs, flags: "
             f"{', '.join(env['cpu_flags'])}), Python {env['python']}, HTTP stack: uvicorn "
             f"(h11) + starlette. Load average at start {env['load_start']}, at end "
             f"{env['load_end']}. Client (httpx async, {CLIENTS} connections) and server share "
             "the same CPUs. Server: `--threads 1 --workers 2`; requests: one real JPEG each, "
             "binary BYTES input, top-1 classification output (checked against the in-process "
             "Predictor: a wrong top-1 counts as an error).", "",
             "| model | mode | clients | requests | req/s | p50 ms | p99 ms | errors "
             "| frames/call |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m in doc["models"]:
        ip = m["in_process"]
        lines.append(f"| {m['model']} | in-process Predictor | 1 | {ip['requests']} | "
                     f"{ip['throughput_rps']} | {ip['p50_ms']} | {ip['p99_ms']} | - | 1 |")
        for mode in ("no_batching", "micro_batching"):
            for key in ("single_client", "clients_32"):
                r = m[mode][key]
                lines.append(f"| {m['model']} | server, {mode.replace('_', '-')} | "
                             f"{r['clients']} | {r['requests']} | {r['throughput_rps']} | "
                             f"{r['p50_ms']} | {r['p99_ms']} | {sum(r['errors'].values())} | "
                             f"{r.get('mean_frames_per_call', '-')} |")
    lines += ["", "| model | server p50 ÷ in-process p50 (1 client) | 32-client throughput ÷ "
              "in-process (no batching / micro-batching) |", "|---|---|---|"]
    for m in doc["models"]:
        t = m["throughput_ratio_32_clients_vs_in_process"]
        lines.append(f"| {m['model']} | {m['overhead_ratio_single_client_p50']} | "
                     f"{t['no_batching']} / {t['micro_batching']} |")
    s = doc.get("soak")
    if s:
        lines += ["", f"Soak: {s['requests']} requests on fashion, {CLIENTS} clients, "
                  f"{s['seconds']} s ({s['throughput_rps']} req/s), errors {s['errors'] or 0}; "
                  f"server RSS start / middle / end: {s['rss_mb'].get('start')} / "
                  f"{s['rss_mb'].get('middle')} / {s['rss_mb'].get('end')} MB "
                  f"(growth {s['rss_growth_mb']} MB); exit code after SIGTERM {s['exit_code']}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "serve"))
    ap.add_argument("--artifacts", help="folder with fashion.onnx, efficientnet-lite0.onnx")
    ap.add_argument("--models", default="fashion,efficientnet-lite0")
    ap.add_argument("--soak", type=int, default=10_000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="small counts (a smoke run)")
    args = ap.parse_args()
    art = Path(args.artifacts) if args.artifacts else REPO / "out"
    load_start = load()
    doc: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "models": []}
    for name in args.models.split(","):
        path = art / f"{name}.onnx"
        if not path.exists():
            from edgeinfer.converter.api import convert

            art.mkdir(parents=True, exist_ok=True)
            convert(name, path)
        print(f"[serve_load] {name}", file=sys.stderr)
        doc["models"].append(run_model(path, name, args.quick, args.threads, args.workers))
    if args.soak:
        print(f"[serve_load] soak {args.soak}", file=sys.stderr)
        doc["soak"] = soak(art / "fashion.onnx", args.soak, args.threads, args.workers)
    doc["environment"] = {"cpu": cpu_model(), "cpus": os.cpu_count(), "cpu_flags": cpu_flags(),
                          "python": platform.python_version(), "load_start": load_start,
                          "load_end": load(), "httpx": httpx.__version__}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "load.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "load.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
