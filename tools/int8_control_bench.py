"""What the int8 accuracy control costs, and how its cost scales with the held-out frames.

    python tools/int8_control_bench.py OUT_DIR FP32.onnx --data DATA --calibration DATA
        [--target x86-vnni] [--min-agreement 0.99] [--frames 400 800 1600]

A benchmark, not a test: for each held-out size N it runs the converter's loop
(:func:`edgeinfer.converter.int8.control.control` over ``OnnxInt8``) from scratch on the first
N frames of DATA and records the wall time split into calibration (the first build),
ranking (one build per layer, run on the 32 worst frames), and the steps (one build + a
run over the N frames each), plus the layers kept float and the agreement reached. Writes
OUT_DIR/bench.json and bench.md with the CPU flags and load averages.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import onnx

from edgeinfer.converter.assemble import with_metadata
from edgeinfer.converter.int8.control import control
from edgeinfer.converter.int8.onnx_quant import OnnxInt8
from edgeinfer.converter.int8.targets import cpu_flags
from edgeinfer.data.frames import load_frames
from edgeinfer.errors import EdgeInferError
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.runtime.metadata import read_metadata


def one(fp32: onnx.ModelProto, meta, frames, cal, target: str | None,
        min_agreement: float) -> dict:
    t0 = time.perf_counter()
    with OnnxInt8(fp32, cal, target=target) as q:
        class Build:
            candidates, labels = q.candidates, q.labels

            def __call__(self, keep):
                return with_metadata(q.build(keep), meta).SerializeToString()

        try:
            _m, res = control(Build(), lambda m, fr: ArtifactRunner(m).run(fr),
                              with_metadata(fp32, meta).SerializeToString(), frames,
                              min_agreement=min_agreement)
            out = res.to_dict()
            reached = True
        except EdgeInferError as e:
            out, reached = {"error": str(e)}, False
    wall = time.perf_counter() - t0
    steps = out.get("steps", [])
    return {"n": len(frames), "reached": reached, "wall_s": wall,
            "calibration_and_first_step_s": steps[0]["seconds"] if steps else None,
            "rank_s": out.get("rank_s"), "steps": len(steps),
            "steps_s": sum(s["seconds"] for s in steps[1:]) if steps else None,
            "kept_float": out.get("kept_float"), "candidates": out.get("candidates"),
            "agreement": steps[-1]["agreement"] if steps else None,
            "ci95": steps[-1]["ci95"] if steps else None, "error": out.get("error")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("fp32")
    ap.add_argument("--data", required=True)
    ap.add_argument("--calibration", required=True)
    ap.add_argument("--calibration-limit", type=int, default=256)
    ap.add_argument("--target", default=None)
    ap.add_argument("--min-agreement", type=float, default=0.99)
    ap.add_argument("--frames", type=int, nargs="+", default=[400, 800, 1600])
    a = ap.parse_args()
    o = Path(a.out)
    o.mkdir(parents=True, exist_ok=True)
    meta = read_metadata(a.fp32)
    fp32 = onnx.load_model(a.fp32)
    data = load_frames(a.data, meta.spec, limit=max(a.frames))
    cal = load_frames(a.calibration, meta.spec, limit=a.calibration_limit).frames
    load0 = list(os.getloadavg())
    runs = [one(fp32, meta, data.frames[:n], cal, a.target, a.min_agreement)
            for n in a.frames]
    env = {"cpu_flags": sorted(cpu_flags() & {"avx2", "avx512f", "avx512_vnni", "avx_vnni"}),
           "load_average": {"before": load0, "after": list(os.getloadavg())},
           "model": a.fp32, "data": data.name, "calibration": f"{a.calibration} ({len(cal)})",
           "target": a.target, "min_agreement": a.min_agreement}
    (o / "bench.json").write_text(json.dumps({"runs": runs, **env}, indent=1))
    md = [f"Model {Path(a.fp32).name}, held-out {data.name}, calibration {env['calibration']}, "
          f"target {a.target or 'default'}, --min-agreement {a.min_agreement}; CPU flags "
          f"{' '.join(env['cpu_flags'])}; load average {load0[0]:.1f} -> "
          f"{env['load_average']['after'][0]:.1f}.", "",
          "| held-out frames | wall s | calibration + step 0 s | ranking s | later steps "
          "(count, s) | layers kept float | agreement (95% CI) |", "|---|---|---|---|---|---|---|"]
    for r in runs:
        ci = f" [{r['ci95'][0]:.2%}, {r['ci95'][1]:.2%}]" if r["ci95"] else ""
        kept = (f"{len(r['kept_float'])} of {r['candidates']}" if r["reached"]
                else f"refused: {r['error'][:80]}")
        md.append(f"| {r['n']} | {r['wall_s']:.0f} | {r['calibration_and_first_step_s'] or 0:.0f}"
                  f" | {r['rank_s'] or 0:.0f} | {max(r['steps'] - 1, 0)}, {r['steps_s'] or 0:.0f}"
                  f" | {kept} | {(r['agreement'] or 0):.2%}{ci} |")
    (o / "bench.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
