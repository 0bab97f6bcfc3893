"""Memory of `edgeinfer serve` under hostile input (a script, not a unit test).

    python tools/serve_memory.py --artifacts DIR [--mixed 10000] [--out docs/serve]

1. onnxruntime's CPU arena, each setting in a fresh process on the fashion artifact: the
   default arena, arena off, shrinkage after every run, and edgeinfer's choice (shrink
   only after a run above ``SHRINK_ABOVE_PIXELS``): RSS steady / after one 24 MP frame /
   after 50 more 640x480 frames, and the p50 of 640x480 and 1920x1080 runs;
2. the server (``python -m edgeinfer serve``, a separate process on 127.0.0.1) RSS
   timeline: steady, after one 24 MP JPEG, after a large frame with ``hflip+crops`` TTA,
   after ``--mixed`` mixed requests (small JPEGs, a 12 MP photo now and then, bad input);
3. the global byte budget: concurrent slow uploads past ``--max-inflight-mb`` get 503 +
   Retry-After.
Writes docs/serve/memory.{json,md} with the CPU flags and the load average.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import REPO, Server, cpu_flags, load, rss_mb  # noqa: E402

from edgeinfer.data.datasets import load_fashion_mnist, sample_photos  # noqa: E402

ARENA_CHILD = r"""
import json, sys, time
import numpy as np, onnxruntime as ort
mode, path = sys.argv[1], sys.argv[2]
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS"))
so = ort.SessionOptions(); so.intra_op_num_threads = 1; so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
if mode == "off":
    so.enable_cpu_mem_arena = False
s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
shrink = ort.RunOptions()
shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
LIMIT = 4_000_000
def run(x):
    big = x.shape[1] * x.shape[2] > LIMIT
    opts = shrink if mode == "shrink-every-run" or (mode == "edgeinfer" and big) else None
    return s.run(["probs"], {"frame": x}, opts)
rng = np.random.default_rng(0)
out = {}
for name, (h, w) in {"640x480": (480, 640), "1920x1080": (1080, 1920)}.items():
    x = rng.integers(0, 256, (1, h, w, 3), np.uint8)
    for _ in range(5): run(x)
    t = []
    for _ in range(30):
        t0 = time.perf_counter(); run(x); t.append(time.perf_counter() - t0)
    out[f"p50_ms_{name}"] = round(float(np.median(t)) * 1e3, 2)
small = rng.integers(0, 256, (1, 480, 640, 3), np.uint8)
for _ in range(20): run(small)
out["rss_steady_mb"] = round(rss(), 1)
t0 = time.perf_counter(); run(rng.integers(0, 256, (1, 4000, 6000, 3), np.uint8))
out["ms_24mp"] = round((time.perf_counter() - t0) * 1e3)
out["rss_after_24mp_mb"] = round(rss(), 1)
for _ in range(50): run(small)
out["rss_after_50_small_mb"] = round(rss(), 1)
print(json.dumps(out))
"""


def arena(path: Path) -> dict:
    res = {}
    for mode in ("default", "off", "shrink-every-run", "edgeinfer"):
        r = subprocess.run([sys.executable, "-c", ARENA_CHILD, mode, str(path)],
                           capture_output=True, text=True, timeout=600, check=True)
        res[mode] = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"  arena {mode}: {res[mode]}", file=sys.stderr)
    return res


def jpeg(img: np.ndarray, q: int = 90) -> bytes:
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()


def timeline(path: Path, mixed: int) -> dict:
    photo = sample_photos()["coffee"]
    big24 = jpeg(cv2.resize(photo, (6000, 4000)))
    big3 = jpeg(cv2.resize(photo, (2000, 1500)))
    mid12 = jpeg(cv2.resize(photo, (4000, 3000)))
    ims, _ = load_fashion_mnist("test")
    small = [jpeg(cv2.cvtColor(cv2.resize(im, (56, 56)), cv2.COLOR_GRAY2BGR)) for im in ims[:64]]
    out: dict = {}
    srv = Server(path, "--threads", "1", "--workers", "2")
    try:
        pid = srv.proc.pid
        with httpx.Client(base_url=srv.url, timeout=120) as c:
            for j in small * 4:
                c.post("/predict", content=j)
            out["steady"] = round(rss_mb(pid), 1)
            out["24mp_status"] = c.post("/predict", content=big24).status_code
            for j in small:
                c.post("/predict", content=j)
            out["after_24mp_frame"] = round(rss_mb(pid), 1)
            statuses: dict[str, int] = {}
            t0 = time.perf_counter()
            for i in range(mixed):
                body = (mid12 if i % 1000 == 500 else b"\xff\xd8junk" if i % 97 == 0
                        else small[i % len(small)])
                k = str(c.post("/predict", content=body).status_code)
                statuses[k] = statuses.get(k, 0) + 1
            out["mixed"] = {"requests": mixed, "seconds": round(time.perf_counter() - t0, 1),
                            "status": statuses}
            out["after_mixed"] = round(rss_mb(pid), 1)
    finally:
        out["exit_code"] = srv.stop()
    srv = Server(path, "--threads", "1", "--tta", "hflip+crops")
    try:
        with httpx.Client(base_url=srv.url, timeout=120) as c:
            for j in small * 2:
                c.post("/predict", content=j)
            out["tta_steady"] = round(rss_mb(srv.proc.pid), 1)
            out["tta_3mp_status"] = c.post("/predict", content=big3).status_code
            r = c.post("/predict", content=big24)
            out["tta_24mp_status"] = r.status_code
            out["tta_24mp_error"] = r.json().get("error", "")[:160]
            for j in small:
                c.post("/predict", content=j)
            out["after_tta_large_frame"] = round(rss_mb(srv.proc.pid), 1)
    finally:
        srv.stop()
    return out


def budget(path: Path) -> dict:
    """8 slow uploads of 3 MiB each (Content-Length declared, as clients do for a known
    body) against a 16 MiB in-flight budget: 503 past it."""
    srv = Server(path, "--max-inflight-mb", "16", "--max-body-mb", "4", "--max-json-mb", "4")
    body = b'{"inputs": [{"name": "frame", "datatype": "UINT8", "shape": [1, 1, 1, 3], ' \
           b'"data": [1, 2, 3]}]' + b" " * (3 * 2**20) + b"}"
    headers = {"content-length": str(len(body))}

    async def go() -> list[tuple[int, str | None]]:
        async def slow():
            yield body[:-1]
            await asyncio.sleep(1.5)
            yield body[-1:]

        async with httpx.AsyncClient(timeout=30) as c:
            rs = await asyncio.gather(*(c.post(f"{srv.url}/v2/models/{path.stem}/infer",
                                               content=slow(), headers=headers)
                                        for _ in range(8)))
        return [(r.status_code, r.headers.get("retry-after")) for r in rs]

    try:
        res = asyncio.run(go())
    finally:
        srv.stop()
    counts: dict[str, int] = {}
    for status, _ in res:
        counts[str(status)] = counts.get(str(status), 0) + 1
    return {"uploads": 8, "each_mib": 3, "budget_mib": 16, "status": counts,
            "retry_after_on_503": sorted({ra for s, ra in res if s == 503 and ra})}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifacts", required=True, help="folder with fashion.onnx")
    ap.add_argument("--mixed", type=int, default=10_000)
    ap.add_argument("--out", default=str(REPO / "docs" / "serve"))
    args = ap.parse_args()
    path = Path(args.artifacts) / "fashion.onnx"
    doc = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu_flags": cpu_flags(),
           "load_start": load()}
    doc["arena"] = arena(path)
    doc["server_rss_mb"] = timeline(path, args.mixed)
    print(f"  timeline {doc['server_rss_mb']}", file=sys.stderr)
    doc["byte_budget"] = budget(path)
    doc["load_end"] = load()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
