"""Latency of fp32 vs int8 per target, interleaved so that load drift hits all alike.

    python tools/int8_latency.py FP32.onnx OUT_DIR [--photos]

Builds the int8 artifacts for x86-avx2 (7-bit weights) and x86-vnni (8-bit weights)
once (cached in OUT_DIR), then times batch-1 calls of each, in rotating rounds, at 1 and 2
threads, on a real frame (a bundled photo for ``--photos``, else a Fashion-MNIST frame).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import onnx

from edgeinfer.converter.int8.onnx_quant import quantize_int8
from edgeinfer.converter.int8.targets import cpu_flags
from edgeinfer.data.frames import load_frames
from edgeinfer.runtime.loader import open_backend
from edgeinfer.runtime.metadata import read_metadata
from edgeinfer.runtime.timing import interleaved, summarize

ROUNDS, PER_ROUND = 30, 5


def main(fp32: str, out: str, photos: bool) -> None:
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    spec = read_metadata(fp32).spec
    if photos:
        from edgeinfer.data.calibration import calibration_frames

        cal, frame = calibration_frames(1000, augmented=False)[0], \
            load_frames("builtin:photos", spec).frames[0]
    else:
        cal = load_frames("builtin:fashion-train", spec, limit=256).frames
        frame = load_frames("builtin:fashion-test", spec, limit=1).frames[0]
    files = {"fp32": Path(fp32)}
    for target in ("x86-avx2", "x86-vnni"):
        p = o / f"int8-{target}.onnx"
        if not p.exists():
            onnx.save_model(quantize_int8(onnx.load_model(fp32), cal, target=target), p)
        files[f"int8 {target}"] = p
    x = frame[None]
    res: dict[str, dict[str, float]] = {}
    for threads in (1, 2):
        backends = {k: open_backend(str(v), threads) for k, v in files.items()}
        cases = {k: (lambda b=b: b.run(x)) for k, b in backends.items()}
        times = interleaved(cases, {k: ROUNDS * PER_ROUND for k in cases}, warmup=5,
                            rounds=ROUNDS)
        for k, v in times.items():
            t = summarize(v)
            res[f"{k} @{threads}"] = {"p50": t["p50"], "p90": t["p90"], "min": t["min"],
                                      "n": t["n"]}
    meta = {"cpu_flags": sorted(cpu_flags() & {"avx2", "avx512f", "avx512_vnni"}),
            "load_average": list(os.getloadavg()), "frame": list(frame.shape),
            "sizes_mb": {k: v.stat().st_size / 1e6 for k, v in files.items()}}
    (o / "latency.json").write_text(json.dumps({"latency_ms": res, **meta}, indent=1))
    for k, v in res.items():
        print(f"{k:24s} p50 {v['p50']:.3f} ms  p90 {v['p90']:.3f}  min {v['min']:.3f}")
    print(meta)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], "--photos" in sys.argv)
