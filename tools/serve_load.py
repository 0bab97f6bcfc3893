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
``tritonclient.http`` with one greenlet per simulated client, in this process, on the same
machine: client and server share the CPUs, which is stated in the report with the CPU
flags and the load average, next to CPU milliseconds per request (load-independent).
"""

from __future__ import annotations

import argparse
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
import gevent
import httpx
import numpy as np
import tritonclient.http as triton

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeinfer.data.datasets import load_fashion_mnist, sample_photos  # noqa: E402
from edgeinfer.runtime.predictor import Predictor  # noqa: E402

CLIENTS = 32


def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text()
    return sorted(set(re.findall(r"\b(avx2|avx512f|avx512_vnni|avx_vnni|amx_tile)\b", text)))


def cpu_model() -> str:
    m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
    return m[1].strip() if m else platform.processor()


def _stack() -> str:
    """What uvicorn's http="auto" picks here: httptools + uvloop when installed, else h11."""
    import importlib.util

    fast = all(importlib.util.find_spec(m) for m in ("httptools", "uvloop"))
    return "httptools + uvloop" if fast else "h11"


def load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def rss_mb(pid: int) -> float:
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m[1]) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (load-independent cost)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def images(model: str) -> list[bytes]:
    """Real images as JPEG: Fashion-MNIST test frames, or the six real photos."""
    if model == "fashion":
        ims, _ = load_fashion_mnist("test")
        frames = [cv2.cvtColor(im, cv2.COLOR_GRAY2BGR) for im in ims[:64]]
    else:
        frames = list(sample_photos().values())
    return [cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for f in frames]


def infer_input(jpeg: bytes) -> triton.InferInput:
    """One encoded image as a BYTES input (sent with the binary tensor data extension)."""
    inp = triton.InferInput("frame", [1], "BYTES")
    inp.set_data_from_numpy(np.array([jpeg], dtype=np.object_))
    return inp


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 3) if values else float("nan")


def baseline(pred: Predictor, jpegs: list[bytes], n: int) -> dict:
    """n in-process ``predict`` calls one after another: latencies (ms) and CPU seconds."""
    for j in jpegs[:4]:
        pred.predict(j)
    lat = []
    cpu0 = time.process_time()
    for i in range(n):
        t = time.perf_counter()
        pred.predict(jpegs[i % len(jpegs)], top_k=1)
        lat.append((time.perf_counter() - t) * 1e3)
    return {"lat": lat, "cpu": time.process_time() - cpu0}


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


def drive(url: str, model: str, inputs: list, want: list[int], clients: int, total: int,
          seconds: float, on_progress=None, server_pid: int | None = None) -> dict:
    """``clients`` concurrent callers until ``total`` requests or ``seconds`` have passed.

    The client is ``tritonclient.http`` (geventhttpclient, C HTTP parser) with one
    greenlet per simulated client: at ~0.15-0.3 ms of CPU per request it leaves the CPU
    to the server (httpx's async client needed 3.8 ms per request at 32 connections here,
    and became the bottleneck). With ``server_pid``, also the CPU milliseconds per
    request of the server process and of this client: unlike throughput on a shared
    machine, they do not depend on what else runs.
    """
    c = triton.InferenceServerClient(url.removeprefix("http://"), concurrency=clients,
                                     connection_timeout=60, network_timeout=120)
    out = [triton.InferRequestedOutput("probs", binary_data=False, class_count=1)]
    cpu0 = cpu_seconds(server_pid) if server_pid else None
    me0 = time.process_time()
    lat: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + seconds

    def worker() -> None:
        nonlocal sent
        while sent < total and time.perf_counter() < deadline:
            i = sent % len(inputs)
            sent += 1
            t = time.perf_counter()
            try:
                r = c.infer(model, [inputs[i]], outputs=out)
            except Exception as e:  # noqa: BLE001 - counted, the run goes on
                key = type(e).__name__ + (f" {e.status()}" if hasattr(e, "status") else "")
                errors[key] = errors.get(key, 0) + 1
                continue
            lat.append((time.perf_counter() - t) * 1e3)
            top = r.as_numpy("probs")[0][0]
            top = top.decode() if isinstance(top, bytes) else top
            if int(top.split(":")[1]) != want[i]:
                errors["wrong top-1"] = errors.get("wrong top-1", 0) + 1
            if on_progress is not None:
                on_progress(len(lat))

    t0 = time.perf_counter()
    gevent.joinall([gevent.spawn(worker) for _ in range(clients)])
    wall = time.perf_counter() - t0
    c.close()
    return {"clients": clients, "lat": lat, "errors": errors, "wall": wall,
            "client_cpu": time.process_time() - me0,
            "server_cpu": cpu_seconds(server_pid) - cpu0 if cpu0 is not None else None}


def summarize(runs: list[dict]) -> dict:
    """Interleaved chunks of one configuration as one result."""
    lat = [v for r in runs for v in r["lat"]]
    wall = sum(r["wall"] for r in runs)
    errors: dict[str, int] = {}
    for r in runs:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    res = {"clients": runs[0]["clients"], "requests": len(lat), "seconds": round(wall, 2),
           "throughput_rps": round(len(lat) / wall, 1), "p50_ms": pct(lat, 50),
           "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99), "errors": errors,
           "client_cpu_ms_per_request": round(sum(r["client_cpu"] for r in runs)
                                              / len(lat) * 1e3, 3)}
    if runs[0]["server_cpu"] is not None:
        res["server_cpu_ms_per_request"] = round(sum(r["server_cpu"] for r in runs)
                                                 / len(lat) * 1e3, 3)
    return res


MODES = {"no_batching": (), "micro_batching": ("--max-batch", "8", "--batch-window-ms", "2")}


def run_model(path: Path, name: str, quick: bool, threads: int, workers: int) -> dict:
    """Both server configurations run side by side and are driven in alternating chunks
    (with the in-process baseline between them), so that load from other processes on
    a shared machine hits every configuration alike."""
    jpegs = images(name)
    pred = Predictor(path, threads=threads)
    want = [pred.predict(j, top_k=1)[0].index for j in jpegs]
    inputs = [infer_input(j) for j in jpegs]
    fast = name == "fashion"
    rounds = 2 if quick else 6
    n_single = (30 if quick else 80) if fast else (10 if quick else 15)
    n_load = (150 if quick else 600) if fast else (30 if quick else 120)
    out: dict = {"model": name, "images": len(jpegs), "load_before": load(), "rounds": rounds}
    common = ("--threads", str(threads), "--workers", str(workers), "--max-queue", "256")
    servers = {mode: Server(path, *common, *extra) for mode, extra in MODES.items()}
    base_lat: list[float] = []
    base_cpu = 0.0
    runs: dict[str, dict[str, list]] = {m: {"single": [], "load": []} for m in MODES}
    try:
        for srv in servers.values():
            drive(srv.url, name, inputs, want, 4, 40, 30)  # warm-up
        for r in range(rounds):
            b = baseline(pred, jpegs, n_single)
            base_lat += b["lat"]
            base_cpu += b["cpu"]
            order = list(MODES) if r % 2 == 0 else list(reversed(MODES))
            for mode in order:
                srv = servers[mode]
                pid = srv.proc.pid
                runs[mode]["single"].append(drive(srv.url, name, inputs, want, 1, n_single,
                                                  60, server_pid=pid))
                runs[mode]["load"].append(drive(srv.url, name, inputs, want, CLIENTS, n_load,
                                                120, server_pid=pid))
        frames = {mode: srv.batch_mean(name) for mode, srv in servers.items()}
    finally:
        codes = {mode: srv.stop() for mode, srv in servers.items()}
    out["in_process"] = {"requests": len(base_lat), "p50_ms": pct(base_lat, 50),
                         "p99_ms": pct(base_lat, 99),
                         "throughput_rps": round(1e3 / float(np.mean(base_lat)), 1),
                         "cpu_ms_per_call": round(base_cpu / len(base_lat) * 1e3, 3)}
    out["_latencies"] = {mode: {"1 client": [v for r in runs[mode]["single"] for v in r["lat"]],
                                f"{CLIENTS} clients": [v for r in runs[mode]["load"]
                                                       for v in r["lat"]]} for mode in MODES}
    out["_latencies"]["in_process"] = {"1 client": base_lat}
    for mode in MODES:
        single, load32 = summarize(runs[mode]["single"]), summarize(runs[mode]["load"])
        load32["mean_frames_per_call"] = frames[mode]
        out[mode] = {"single_client": single, "clients_32": load32, "exit_code": codes[mode],
                     "server_args": list(common + MODES[mode])}
        print(f"  {name} {mode}: 1 client p50 {single['p50_ms']} ms; 32 clients "
              f"{load32['throughput_rps']} req/s p50 {load32['p50_ms']} p99 "
              f"{load32['p99_ms']} ms errors {load32['errors']}", file=sys.stderr)
    base = out["in_process"]
    nb = out["no_batching"]
    out["overhead_ratio_single_client_p50"] = round(nb["single_client"]["p50_ms"]
                                                    / base["p50_ms"], 2)
    out["overhead_ratio_server_cpu"] = round(nb["clients_32"]["server_cpu_ms_per_request"]
                                             / base["cpu_ms_per_call"], 2)
    out["throughput_ratio_32_clients_vs_in_process"] = {
        m: round(out[m]["clients_32"]["throughput_rps"] / base["throughput_rps"], 2)
        for m in MODES}
    out["micro_batching_gain"] = {
        "throughput": round(out["micro_batching"]["clients_32"]["throughput_rps"]
                            / nb["clients_32"]["throughput_rps"], 2),
        "server_cpu_per_request": round(
            out["micro_batching"]["clients_32"]["server_cpu_ms_per_request"]
            / nb["clients_32"]["server_cpu_ms_per_request"], 2),
        "p50_32_clients": round(out["micro_batching"]["clients_32"]["p50_ms"]
                                / nb["clients_32"]["p50_ms"], 2),
        "p50_single_client": round(out["micro_batching"]["single_client"]["p50_ms"]
                                   / nb["single_client"]["p50_ms"], 2)}
    out["load_after"] = load()
    return out


def soak(path: Path, total: int, threads: int, workers: int) -> dict:
    """``total`` requests at 32 clients; the server's RSS after warm-up, halfway, at the end."""
    jpegs = images("fashion")
    pred = Predictor(path, threads=threads)
    want = [pred.predict(j, top_k=1)[0].index for j in jpegs]
    inputs = [infer_input(j) for j in jpegs]
    srv = Server(path, "--threads", str(threads), "--workers", str(workers))
    samples: dict[str, float] = {}
    try:
        drive(srv.url, "fashion", inputs, want, 4, 200, 30)
        samples["start"] = rss_mb(srv.proc.pid)

        def progress(done: int) -> None:
            if done == total // 2 and "middle" not in samples:
                samples["middle"] = rss_mb(srv.proc.pid)

        res = summarize([drive(srv.url, "fashion", inputs, want, CLIENTS, total, 600,
                               progress, server_pid=srv.proc.pid)])
        samples["end"] = rss_mb(srv.proc.pid)
    finally:
        rc = srv.stop()
    res["rss_mb"] = {k: round(v, 1) for k, v in samples.items()}
    res["rss_growth_mb"] = round(samples["end"] - samples["start"], 1)
    res["exit_code"] = rc
    return res


def plot(doc: dict, path: Path) -> None:
    """Latency CDFs per model: in-process, 1 client and 32 clients, plain and batched."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    models = doc["models"]
    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4), squeeze=False)
    styles = {"in_process": "k", "no_batching": "tab:blue", "micro_batching": "tab:orange"}
    for ax, m in zip(axes[0], models, strict=True):
        for mode, series in m["_latencies"].items():
            for label, lat in series.items():
                if not lat:
                    continue
                x = np.sort(lat)
                ax.plot(x, np.arange(1, len(x) + 1) / len(x), color=styles[mode],
                        ls="-" if label.startswith(str(CLIENTS)) else ":",
                        label=f"{mode.replace('_', ' ')}, {label}")
        ax.set_xscale("log")
        ax.set_xlabel("latency, ms (log)")
        ax.set_ylabel("fraction of requests")
        ax.set_title(f"{m['model']}: server vs in-process")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(doc: dict) -> str:
    env = doc["environment"]
    lines = ["# `edgeinfer serve` under load (loopback)", "",
             f"Run {doc['date']} on {env['cpu']} ({env['cpus']} CPUs, flags: "
             f"{', '.join(env['cpu_flags'])}), Python {env['python']}, HTTP stack: uvicorn "
             f"({_stack()}) + starlette. Load average at start {env['load_start']}, at end "
             f"{env['load_end']}. Client (tritonclient.http, {CLIENTS} connections) and "
             "server share the same CPUs. Server: `--threads 1 --workers 2`; requests: one "
             "real JPEG each, binary BYTES input, top-1 classification output (checked "
             "against the in-process Predictor: a wrong top-1 counts as an error).", "",
             "| model | mode | clients | requests | req/s | p50 ms | p99 ms | errors "
             "| frames/call | server CPU ms/req | client CPU ms/req |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in doc["models"]:
        ip = m["in_process"]
        lines.append(f"| {m['model']} | in-process Predictor | 1 | {ip['requests']} | "
                     f"{ip['throughput_rps']} | {ip['p50_ms']} | {ip['p99_ms']} | - | 1 | "
                     f"{ip['cpu_ms_per_call']} (in process) | - |")
        for mode in ("no_batching", "micro_batching"):
            for key in ("single_client", "clients_32"):
                r = m[mode][key]
                lines.append(f"| {m['model']} | server, {mode.replace('_', '-')} | "
                             f"{r['clients']} | {r['requests']} | {r['throughput_rps']} | "
                             f"{r['p50_ms']} | {r['p99_ms']} | {sum(r['errors'].values())} | "
                             f"{r.get('mean_frames_per_call', '-')} | "
                             f"{r.get('server_cpu_ms_per_request', '-')} | "
                             f"{r['client_cpu_ms_per_request']} |")
    lines += ["", "Server overhead over the in-process Predictor call (no batching), and what "
              "micro-batching (`--max-batch 8 --batch-window-ms 2`) changes at 32 clients:", "",
              "| model | p50 ÷ in-process (1 client) | server CPU ÷ in-process CPU per image | "
              "32-client req/s ÷ in-process (plain / micro-batched) | micro-batching: req/s, "
              "server CPU/req, p50 (32 clients), p50 (1 client) |", "|---|---|---|---|---|"]
    for m in doc["models"]:
        t = m["throughput_ratio_32_clients_vs_in_process"]
        g = m["micro_batching_gain"]
        lines.append(f"| {m['model']} | {m['overhead_ratio_single_client_p50']} | "
                     f"{m['overhead_ratio_server_cpu']} | {t['no_batching']} / "
                     f"{t['micro_batching']} | x{g['throughput']}, x{g['server_cpu_per_request']}"
                     f", x{g['p50_32_clients']}, x{g['p50_single_client']} |")
    lines += ["", "![latency CDFs](latency.png)"]
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
                          "load_end": load()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot(doc, out / "latency.png")
    for m in doc["models"]:
        m.pop("_latencies")
    (out / "load.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "load.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
