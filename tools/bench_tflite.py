"""Latency of TFLite fp32 / fp16 / int8 vs ONNX fp32 artifacts, 1 and 2 threads.

    .venv/bin/python tools/bench_tflite.py [--cache DIR] [--models fashion efficientnet-lite0]

Converts the artifacts with the real converter (cached in ``--cache``), then times
``backend.run`` on one frame (batch 1) through the same backends the Predictor uses.
Runs are interleaved round-robin over all configurations (a short pause and two untimed
runs before each block), so a slow spell on a shared machine hits every configuration
alike and the ratios stay comparable; the table shows
the median per configuration and its ratio to ONNX fp32 at the same thread count, and
the 5th percentile (closer to the uncontended latency when other processes share the
CPUs).

Frames: the artifact's fixed TFLite frame size (fashion 28x28; EfficientNet-Lite0
224x224, which the spec still upsamples to 256 and crops), and for EfficientNet-Lite0
also a 480x640 frame, which the TFLite backend serves through its host-side geometry
step (included in the time); ONNX resizes it in its graph.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = [("onnx", None), ("tflite", None), ("tflite", "fp16"), ("tflite", "int8")]


def artifact(cache: Path, name: str, fmt: str, quantize: str | None) -> Path:
    from edgeinfer.convert.api import convert

    path = cache / f"{name}-{quantize or 'fp32'}.{fmt}"
    if not path.exists():
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            convert(name, path, format=fmt, quantize=quantize)
        print(f"converted {path.name} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return path


def backend(path: Path, threads: int):
    if path.suffix == ".tflite":
        from edgeinfer.runtime.tflite_backend import TFLiteBackend

        return TFLiteBackend(path, threads=threads)
    from edgeinfer.runtime.onnx_backend import OnnxBackend

    return OnnxBackend(path, threads=threads)


def bench(model: str, cache: Path, frames: dict[str, np.ndarray], rounds: int,
          per_round: int) -> list[dict]:
    configs = []
    for fmt, q in VARIANTS:
        path = artifact(cache, model, fmt, q)
        for threads in (1, 2):
            for fname, frame in frames.items():
                be = backend(path, threads)
                x = frame[None]
                for _ in range(10):  # warm-up: allocation, XNNPACK packing, ORT arenas
                    be.run(x)
                configs.append({"model": model, "format": fmt, "dtype": q or "fp32",
                                "threads": threads, "frame": fname, "run": be.run, "x": x,
                                "times": [], "size_mb": path.stat().st_size / 1e6})
    for _ in range(rounds):
        for c in configs:
            run, x, times = c["run"], c["x"], c["times"]
            # Let the previous configuration's worker threads (onnxruntime spins after a
            # run) go idle, and re-warm caches, so configurations do not slow each other.
            time.sleep(0.02)
            run(x)
            run(x)
            for _ in range(per_round):
                t = time.perf_counter()
                run(x)
                times.append(time.perf_counter() - t)
    for c in configs:
        c["median_ms"] = 1e3 * statistics.median(c["times"])
        c["p5_ms"] = 1e3 * float(np.percentile(c["times"], 5))
        c["n"] = len(c["times"])
        del c["run"], c["x"], c["times"]
    for c in configs:
        base = next(b for b in configs if b["model"] == c["model"] and b["format"] == "onnx"
                    and b["threads"] == c["threads"] and b["frame"] == c["frame"])
        c["vs_onnx_fp32"] = c["median_ms"] / base["median_ms"]
        c["p5_vs_onnx_fp32"] = c["p5_ms"] / base["p5_ms"]
    return configs


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "edgeinfer-bench"))
    ap.add_argument("--models", nargs="+", default=["fashion", "efficientnet-lite0"])
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)

    from edgeinfer.datasets import load_fashion_mnist, sample_photos

    load_before = os.getloadavg()
    rows = []
    for model in args.models:
        if model == "fashion":
            img = load_fashion_mnist("test")[0][0]
            frames = {"28x28": np.ascontiguousarray(np.repeat(img[..., None], 3, -1))}
            rows += bench(model, cache, frames, args.rounds, per_round=50)
        else:
            import cv2

            photo = sample_photos()["chelsea"]
            frames = {"224x224": cv2.resize(photo, (224, 224), interpolation=cv2.INTER_AREA),
                      "480x640": cv2.resize(photo, (640, 480), interpolation=cv2.INTER_AREA)}
            rows += bench(model, cache, frames, args.rounds, per_round=5)

    print("| model | frame | artifact | size MB | 1 thread ms | 2 threads ms | "
          "vs ONNX fp32 (1 / 2 threads) | p5 ms (1 / 2 threads) | p5 vs ONNX fp32 |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = sorted({(r["model"], r["frame"], r["format"], r["dtype"]) for r in rows},
                  key=lambda k: (k[0], k[1], k[2] != "onnx", ["fp32", "fp16", "int8"].index(k[3])))
    for m, f, fmt, dt in keys:
        one = next(r for r in rows if (r["model"], r["frame"], r["format"], r["dtype"],
                                       r["threads"]) == (m, f, fmt, dt, 1))
        two = next(r for r in rows if (r["model"], r["frame"], r["format"], r["dtype"],
                                       r["threads"]) == (m, f, fmt, dt, 2))
        print(f"| {m} | {f} | {fmt} {dt} | {one['size_mb']:.2f} | {one['median_ms']:.3f} | "
              f"{two['median_ms']:.3f} | {one['vs_onnx_fp32']:.2f} / {two['vs_onnx_fp32']:.2f} | "
              f"{one['p5_ms']:.3f} / {two['p5_ms']:.3f} | "
              f"{one['p5_vs_onnx_fp32']:.2f} / {two['p5_vs_onnx_fp32']:.2f} |")
    print(f"\nmedian of {rows[0]['n']} / {rows[-1]['n']} batch-1 runs per configuration "
          f"({', '.join(args.models)}), interleaved; backend.run only (no image decoding). "
          f"Load average (1 min) before / after: {load_before[0]:.2f} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} CPUs: other processes skew the 2-thread numbers first.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
