"""HTTP stack of `edgeinfer serve`: pure-Python h11 + asyncio vs httptools + uvloop.

    python tools/serve_http.py --artifacts DIR [--rounds 4] [--out docs/serve]

For fashion (0.2 ms model: the protocol dominates) and EfficientNet-Lite0 (~6-12 ms): two
servers side by side (``--http h11`` and ``--http auto``, which picks httptools + uvloop
from ``uvicorn[standard]``), no micro-batching, ``--threads 1 --workers 2``, driven in
alternating chunks with the in-process ``Predictor.predict`` baseline between them, so
load from other processes on a shared machine hits all three alike. Reported: req/s and
p50/p99 at 1 and 32 clients, server CPU ms per request, and the overhead over the
in-process call (p50 at 1 client; server CPU per image). The client, load generator and
helpers are tools/serve_load.py's (tritonclient.http, binary BYTES input, top-1 checked).
Writes docs/serve/http.{json,md}. Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import (  # noqa: E402 - tools/ is not a package
    CLIENTS,
    REPO,
    Server,
    baseline,
    cpu_flags,
    cpu_model,
    drive,
    images,
    infer_input,
    load,
    pct,
    summarize,
)

from edgeinfer.runtime.predictor import Predictor  # noqa: E402

STACKS = {"h11 + asyncio": ("--http", "h11"), "httptools + uvloop": ("--http", "auto")}


def run_model(path: Path, name: str, rounds: int) -> dict:
    jpegs = images(name)
    pred = Predictor(path, threads=1)
    want = [pred.predict(j, top_k=1)[0].index for j in jpegs]
    inputs = [infer_input(j) for j in jpegs]
    fast = name == "fashion"
    n_single, n_load = (100, 600) if fast else (15, 90)
    common = ("--threads", "1", "--workers", "2", "--max-queue", "256")
    out: dict = {"model": name, "rounds": rounds, "load_before": load()}
    servers = {s: Server(path, *common, *extra) for s, extra in STACKS.items()}
    base_lat: list[float] = []
    base_cpu = 0.0
    runs: dict[str, dict[str, list]] = {s: {"single": [], "load": []} for s in STACKS}
    try:
        for srv in servers.values():
            drive(srv.url, name, inputs, want, 4, 40, 30)  # warm-up
        for r in range(rounds):
            b = baseline(pred, jpegs, n_single)
            base_lat += b["lat"]
            base_cpu += b["cpu"]
            for s in (list(STACKS) if r % 2 == 0 else list(reversed(STACKS))):
                srv = servers[s]
                pid = srv.proc.pid
                runs[s]["single"].append(drive(srv.url, name, inputs, want, 1, n_single, 60,
                                               server_pid=pid))
                runs[s]["load"].append(drive(srv.url, name, inputs, want, CLIENTS, n_load, 120,
                                             server_pid=pid))
    finally:
        codes = {s: srv.stop() for s, srv in servers.items()}
    ip = {"requests": len(base_lat), "p50_ms": pct(base_lat, 50), "p99_ms": pct(base_lat, 99),
          "throughput_rps": round(1e3 / float(np.mean(base_lat)), 1),
          "cpu_ms_per_call": round(base_cpu / len(base_lat) * 1e3, 3)}
    out["in_process"] = ip
    for s in STACKS:
        single, many = summarize(runs[s]["single"]), summarize(runs[s]["load"])
        out[s] = {"single_client": single, "clients_32": many, "exit_code": codes[s],
                  "overhead_p50_single_client": round(single["p50_ms"] / ip["p50_ms"], 2),
                  "overhead_server_cpu": round(many["server_cpu_ms_per_request"]
                                               / ip["cpu_ms_per_call"], 2)}
        print(f"  {name} {s}: 1 client p50 {single['p50_ms']} ms (x"
              f"{out[s]['overhead_p50_single_client']}); 32 clients {many['throughput_rps']} "
              f"req/s p50 {many['p50_ms']} p99 {many['p99_ms']}", file=sys.stderr)
    h, u = (out[s]["clients_32"]["throughput_rps"] for s in STACKS)
    out["httptools_uvloop_over_h11_rps_32_clients"] = round(u / h, 2)
    out["load_after"] = load()
    return out


def markdown(doc: dict) -> str:
    env = doc["environment"]
    lines = ["# HTTP stack: h11 + asyncio vs httptools + uvloop (loopback)", "",
             f"Run {doc['date']} on {env['cpu']} ({env['cpus']} CPUs, flags: "
             f"{', '.join(env['cpu_flags'])}), Python {env['python']}, uvicorn + starlette; "
             f"load average at start {env['load_start']}, at end {env['load_end']} (the "
             "machine is shared: ratios are from one interleaved run, absolute figures move "
             "with the load). `python tools/serve_http.py`; server `--threads 1 --workers 2`, "
             "no micro-batching; client tritonclient.http on the same CPUs.", "",
             "| model | stack | clients | requests | req/s | p50 ms | p99 ms | errors | "
             "server CPU ms/req | p50 ÷ in-process | server CPU ÷ in-process |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in doc["models"]:
        ip = m["in_process"]
        lines.append(f"| {m['model']} | in-process Predictor | 1 | {ip['requests']} | "
                     f"{ip['throughput_rps']} | {ip['p50_ms']} | {ip['p99_ms']} | - | "
                     f"{ip['cpu_ms_per_call']} | 1 | 1 |")
        for s in STACKS:
            for key in ("single_client", "clients_32"):
                r = m[s][key]
                over = (m[s]["overhead_p50_single_client"] if key == "single_client" else "-",
                        m[s]["overhead_server_cpu"] if key == "clients_32" else "-")
                lines.append(f"| {m['model']} | {s} | {r['clients']} | {r['requests']} | "
                             f"{r['throughput_rps']} | {r['p50_ms']} | {r['p99_ms']} | "
                             f"{sum(r['errors'].values())} | "
                             f"{r.get('server_cpu_ms_per_request', '-')} | {over[0]} | "
                             f"{over[1]} |")
    lines += ["", "32-client requests/s, httptools + uvloop ÷ h11: " + ", ".join(
        f"{m['model']} x{m['httptools_uvloop_over_h11_rps_32_clients']}"
        for m in doc["models"]) + "."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifacts", required=True, help="folder with fashion.onnx, "
                    "efficientnet-lite0.onnx")
    ap.add_argument("--models", default="fashion,efficientnet-lite0")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--out", default=str(REPO / "docs" / "serve"))
    args = ap.parse_args()
    load_start = load()
    doc: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "models": []}
    for name in args.models.split(","):
        print(f"[serve_http] {name}", file=sys.stderr)
        doc["models"].append(run_model(Path(args.artifacts) / f"{name}.onnx", name,
                                       args.rounds))
    doc["environment"] = {"cpu": cpu_model(), "cpus": __import__("os").cpu_count(),
                          "cpu_flags": cpu_flags(), "python": platform.python_version(),
                          "load_start": load_start, "load_end": load()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "http.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "http.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
