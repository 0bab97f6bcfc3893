"""int8 defaults vs best fixed settings vs the accuracy control, on a FINAL held-out set.

    python tools/int8_control_study.py OUT_DIR --onnx FP32.onnx [--tflite FP32.tflite]
        --final DATA [--final-skip N] --calibration DATA [--calibration-limit 256]
        [--controlled NAME=ARTIFACT ...] [--target-best x86-vnni]

The controlled artifacts are made beforehand with ``edgeinfer convert ... --min-agreement``
on a TUNE set; ``--final`` must share no frame with the tune or calibration sets (the study
never tunes anything on it). The plain int8 rows are quantised here from the fp32 artifacts
with the converter's own quantisers (``OnnxInt8``, ``TfliteInt8``), calibrated on
``--calibration``. Per row: top-1 agreement with the ONNX fp32 artifact (95% Wilson
interval), accuracy where the final set has labels, latency at 1 and 2 threads (one
interleaved run per thread count, through runtime/timing, on one final frame at the TFLite
frame size), size and layers kept float. Writes OUT_DIR/study.json and study.md, with the
CPU flags and load averages.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np
import onnx

from edgeinfer.converter.assemble import with_metadata
from edgeinfer.converter.int8.onnx_quant import OnnxInt8
from edgeinfer.converter.int8.targets import cpu_flags
from edgeinfer.data.frames import load_frames
from edgeinfer.errors import ParityError
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.parity.stats import wilson
from edgeinfer.runtime.loader import open_backend
from edgeinfer.runtime.metadata import read_metadata
from edgeinfer.runtime.timing import interleaved, summarize


def build_rows(a: argparse.Namespace, cal: list[np.ndarray]) -> dict[str, bytes]:
    """name -> artifact bytes: fp32, plain int8 (default / best target), the controlled ones."""
    meta = read_metadata(a.onnx)
    rows = {"ONNX fp32": Path(a.onnx).read_bytes()}
    fp32 = onnx.load_model(a.onnx)
    with OnnxInt8(fp32, cal) as q:
        rows["ONNX int8 default (x86-avx2)"] = with_metadata(q.build(), meta).SerializeToString()
    with OnnxInt8(fp32, cal, target=a.target_best) as q:
        rows[f"ONNX int8 --target {a.target_best}"] = with_metadata(
            q.build(), meta).SerializeToString()
        node = {v: k for k, v in q.labels.items()}
        for layers in a.keep_float or []:  # fixed float layers, by readable name
            keep = [node[x] for x in layers.split(",")]
            rows[f"ONNX int8 --target {a.target_best}, float: {layers}"] = with_metadata(
                q.build(keep), meta).SerializeToString()
    if a.tflite:
        from edgeinfer.converter.export.tflite_metadata import embed_metadata
        from edgeinfer.converter.int8.tflite_quant import TfliteInt8

        t32 = Path(a.tflite).read_bytes()
        tmeta = read_metadata(a.tflite)
        hw = tuple(tmeta.provenance.get("frame_size") or tmeta.spec.size)
        rows["TFLite fp32"] = t32
        rows["TFLite int8 default"] = embed_metadata(
            TfliteInt8(t32, tmeta.spec, hw, cal).build(), tmeta.to_props())
    for item in a.controlled or []:
        name, path = item.split("=", 1)
        rows[name] = Path(path).read_bytes()
    if a.tune:
        tune_set = load_frames(a.tune, meta.spec, limit=a.tune_limit, class_names=meta.labels)
        tune = tune_set.frames
        a.tune_labels = None if tune_set.labels is None else np.asarray(tune_set.labels)
        for fmt, src in (("ONNX", a.onnx), ("TFLite", a.tflite)):
            name = f"{fmt} int8" + "".join(
                f" --{k.replace('_', '-')} {v}" for k in ("min_agreement", "max_drop",
                                                          "max_latency_ratio")
                if (v := getattr(a, k)) is not None)
            cached = Path(a.out) / f"controlled-{fmt.lower()}.bin"
            if src and name not in rows:
                if not cached.exists():
                    cached.write_bytes(controlled_from_artifact(src, cal, tune, a))
                rows[name] = cached.read_bytes()
    return rows


def controlled_from_artifact(path: str, cal: list[np.ndarray], tune: list[np.ndarray],
                             a: argparse.Namespace) -> bytes:
    """The converter's loop (``control`` over ``OnnxInt8`` / ``TfliteInt8``) run on a fp32
    artifact, tuned on ``tune``: what ``convert --min-agreement`` does after its export,
    without re-exporting the model (a litert-torch export costs minutes here)."""
    from edgeinfer.converter.int8.control import control

    meta = read_metadata(path)
    data = Path(path).read_bytes()
    if path.endswith(".onnx"):
        q = OnnxInt8(onnx.load_model(path), cal, target=a.target_best)
        wrap = lambda m: with_metadata(m, meta).SerializeToString()  # noqa: E731
    else:
        from edgeinfer.converter.export.tflite_metadata import embed_metadata
        from edgeinfer.converter.int8.tflite_quant import TfliteInt8

        hw = tuple(meta.provenance.get("frame_size") or meta.spec.size)
        q = TfliteInt8(data, meta.spec, hw, cal)
        wrap = lambda m: embed_metadata(m, meta.to_props())  # noqa: E731

    class Build:
        candidates, labels = q.candidates, q.labels

        def __call__(self, keep):
            return wrap(q.build(keep))

    from edgeinfer.converter.int8.conversion import at_frame_size, latency_vs_fp32

    # the converter's own measure (int8_controlled): interleaved with fp32, at the frame size
    latency = latency_vs_fp32(data, at_frame_size(
        tune[0], tuple(meta.provenance.get("frame_size") or meta.spec.size)))

    try:
        _model, res = control(Build(), lambda m, fr: ArtifactRunner(m).run(fr), data, tune,
                              heldout=a.tune, min_agreement=a.min_agreement, say=print,
                              max_drop=a.max_drop, labels=a.tune_labels,
                              target=a.target_best if path.endswith(".onnx") else None,
                              fmt="onnx" if path.endswith(".onnx") else "tflite",
                              latency=latency, max_latency_ratio=a.max_latency_ratio)
    except ParityError as e:  # refused within the latency budget: keep what it allowed
        res = getattr(e, "control", None)
        if res is None or res.latency_cap is None:
            raise
        print(f"refused: {e}")  # its last step is the ranked layers the budget allowed
    meta.provenance["int8_control"] = res.to_dict()  # wrap() reads this same object
    meta.provenance["quantize"] = "int8"
    out = wrap(q.build(res.final.kept_float))
    if hasattr(q, "__exit__"):
        q.__exit__(None, None, None)
    return out

def kept_float(model: bytes) -> str:
    prov = read_metadata(model).provenance
    ctl = prov.get("int8_control")
    if not ctl:
        return "-" if prov.get("quantize") != "int8" else "0 (plain)"
    return f"{len(ctl['kept_float'])} of {ctl['candidates']}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--onnx", required=True)
    ap.add_argument("--tflite")
    ap.add_argument("--final", required=True)
    ap.add_argument("--final-skip", type=int, default=0)
    ap.add_argument("--calibration", required=True)
    ap.add_argument("--calibration-limit", type=int, default=256)
    ap.add_argument("--controlled", nargs="*")
    ap.add_argument("--target-best", default="x86-vnni")
    ap.add_argument("--tune", help="run the control loop here on this TUNE data set")
    ap.add_argument("--tune-limit", type=int, help="the first N frames of --tune")
    ap.add_argument("--keep-float", nargs="*", help="rows with these layers float (a,b)")
    ap.add_argument("--min-agreement", type=float, default=0.99,
                    help="0 for none (e.g. with --max-drop alone)")
    ap.add_argument("--max-drop", type=float, help="accuracy points (fraction) on the "
                    "labelled tune set")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--max-latency-ratio", type=float,
                    help="the loop's latency budget (x fp32, 1 thread); when it refuses, the "
                    "row is the ranked layers the budget allowed, float")
    a = ap.parse_args()
    a.min_agreement = a.min_agreement or None
    o = Path(a.out)
    o.mkdir(parents=True, exist_ok=True)
    meta = read_metadata(a.onnx)
    final = load_frames(a.final, meta.spec, class_names=meta.labels)
    frames = final.frames[a.final_skip:]
    labels = None if final.labels is None else np.asarray(final.labels)[a.final_skip:]
    cal = load_frames(a.calibration, meta.spec, limit=a.calibration_limit).frames
    rows = build_rows(a, cal)
    probs = {k: ArtifactRunner(v).run(frames) for k, v in rows.items()}
    ref = probs["ONNX fp32"].argmax(-1)
    table = {}
    for k, p in probs.items():
        same = int((p.argmax(-1) == ref).sum())
        table[k] = {"agreement": same / len(ref), "ci95": wilson(same, len(ref)),
                    "flips": len(ref) - same, "size_mb": len(rows[k]) / 1e6,
                    "kept_float": kept_float(rows[k]),
                    "accuracy": None if labels is None else float((p.argmax(-1) == labels).mean())}
    tmeta = read_metadata(a.tflite) if a.tflite else meta
    hw = tuple(tmeta.provenance.get("frame_size") or tmeta.spec.size)
    import cv2

    f = frames[0]
    x = cv2.resize(f, (hw[1], hw[0])).reshape(hw[0], hw[1], -1)[None]
    load = {"before": list(os.getloadavg())}
    for threads in (1, 2):
        bk = {k: open_backend(v, threads) for k, v in rows.items()}
        times = interleaved({k: (lambda b=b: b.run(x)) for k, b in bk.items()},
                            {k: a.runs for k in bk}, warmup=5, rounds=20)
        fp = summarize(times["ONNX fp32"])["p50"]
        for k, v in times.items():
            t = summarize(v)
            table[k][f"p50_ms_{threads}t"] = t["p50"]
            table[k][f"ratio_{threads}t"] = t["p50"] / fp
    load["after"] = list(os.getloadavg())
    env = {"cpu_flags": sorted(cpu_flags() & {"avx2", "avx512f", "avx512_vnni", "avx_vnni"}),
           "load_average": load, "final": f"{final.name}[{a.final_skip}:]", "n": len(frames),
           "calibration": f"{a.calibration} ({len(cal)} frames)", "latency_frame": list(x.shape)}
    (o / "study.json").write_text(json.dumps({"rows": table, **env}, indent=1))
    md = [f"Final set: {env['final']}, n={len(frames)}; calibration {env['calibration']}; "
          f"CPU flags {' '.join(env['cpu_flags'])}; load average {load['before'][0]:.1f} -> "
          f"{load['after'][0]:.1f}.", "",
          "| artifact | agreement with fp32 (95% CI) | flips | accuracy | p50 ms 1 thread "
          "(x fp32) | p50 ms 2 threads (x fp32) | size MB | layers kept float |",
          "|---|---|---|---|---|---|---|---|"]
    for k, r in table.items():
        lo, hi = r["ci95"]
        acc = f"{r['accuracy']:.2%}" if r["accuracy"] is not None else "-"
        md.append(f"| {k} | {r['agreement']:.2%} [{lo:.2%}, {hi:.2%}] | {r['flips']} | {acc} | "
                  f"{r['p50_ms_1t']:.2f} ({r['ratio_1t']:.2f}x) | {r['p50_ms_2t']:.2f} "
                  f"({r['ratio_2t']:.2f}x) | {r['size_mb']:.2f} | {r['kept_float']} |")
    (o / "study.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
