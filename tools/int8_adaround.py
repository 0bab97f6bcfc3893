"""edgeinfer's own AdaRound (converter/int8/adaround*.py) measured: docs/int8/adaround.md.

    python tools/int8_adaround.py quantize MODEL NAME [TARGET]  # nearest + adaround, one run
    python tools/int8_adaround.py evaluate MODEL NAME ...       # agreement, latency, size
    python tools/int8_adaround.py untouched MODEL NAME ...      # on frames nothing fitted on
    python tools/int8_adaround.py report                        # docs/int8/adaround.{md,json}

MODEL: ``effnet`` or ``fashion``, with the frame sets of tools/int8_recon_study.py (effnet:
calibration on the TUNE photos, agreement also on the 400 untouched FINAL photos; fashion:
256 fashion-train frames, final = the 10,000 test images). ``quantize`` calibrates
onnxruntime's MinMax on the first ``ADA_CAL`` tune frames (256: convert's default
``--calibration-limit``), writes that model as ``MODEL-NAME-nearest`` and its AdaRound as
``MODEL-NAME``, the rounding fitted on the first ``ADA_FRAMES`` of those frames (0: adaround_onnx's
default, by memory) with
```ADA_ITERATIONS`` steps per layer, inputs ``ADA_INPUTS`` (quantised | float), fp32 targets
read ``ADA_MEMORY_MB`` at a time (default 384; the runs before 18:20 UTC used 0: one fp32
pass per layer). TARGET: x86-vnni (default) or
x86-avx2. Evaluation is the study's (same frames, interleaved latency, Wilson intervals).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import int8_recon_study as study  # noqa: E402

DOC = study.ROOT / "docs" / "int8" / "adaround"
#: the study's results shown beside ours (same frames, same evaluation)
BASELINES = ["minmax-avx2", "minmax", "quark-adaround"]


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def quantize(model: str, name: str, target: str = "x86-vnni") -> None:
    from edgeinfer.converter.int8.adaround_onnx import adaround_qdq
    from edgeinfer.converter.int8.onnx_quant import OnnxInt8

    fp32_path, _ = study.sets(model)
    fp32 = onnx.load_model(fp32_path)
    cal = study.frames(model, "tune").frames[:int(env("ADA_CAL", "256"))]
    opts = {"iterations": int(env("ADA_ITERATIONS", "0")) or None,  # 0: the default
            "max_frames": int(env("ADA_FRAMES", "0")) or None,  # 0: the module's default
            "inputs": env("ADA_INPUTS", "quantised"), "output_quant": env("ADA_OUTQ", "") == "1",
            "memory": max(1, int(env("ADA_MEMORY_MB", "384")) * 2**20)}
    t0 = time.perf_counter()
    with OnnxInt8(fp32, cal, True, study.say, target=target) as q:
        base = q.build([])
        t1 = time.perf_counter()
        ada = onnx.ModelProto()
        ada.CopyFrom(base)
        _, record = adaround_qdq(ada, onnx.load_model(q.pre), cal, say=study.say, **opts)
    t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for suffix, m, secs in (("-nearest", base, t1 - t0), ("", ada, t2 - t0)):
        dest = study.OUT / f"{model}-{name}{suffix}.onnx"
        onnx.save_model(m, dest)
        Path(str(dest) + ".json").write_text(json.dumps({
            "method": f"{name}{suffix}", "quantize_s": secs, "peak_rss_mb": rss,
            "settings": {"target": target, "calibration_frames": len(cal),
                         **({"adaround": opts | {"memory": opts["memory"] // 2**20},
                             "record": record} if not suffix else {})},
            "load_at_end": list(os.getloadavg())}, indent=1))
    study.say(f"{name}: calibration + nearest {t1 - t0:.0f} s, AdaRound {t2 - t1:.0f} s "
              f"({record['cpu_seconds']} CPU s), peak RSS {rss:.0f} MB")


def report() -> None:
    flags = sorted(set(subprocess.run(
        ["grep", "-o", "-w", r"avx2\|avx512f\|avx512_vnni", "/proc/cpuinfo"],
        capture_output=True, text=True).stdout.split()))
    results: dict[str, dict[str, dict]] = {}
    for f in sorted(study.OUT.glob("*.result.json")):
        model, _, method = f.name.removesuffix(".result.json").partition("-")
        r = json.loads(f.read_text())
        if method in BASELINES or "settings" in r and "adaround" in json.dumps(r["settings"]) \
                or method.endswith("-nearest") or method.startswith("ada"):
            results.setdefault(model, {})[method] = r
    DOC.with_suffix(".json").write_text(json.dumps(
        {"cpu_flags": flags, "cpu_count": os.cpu_count(), "results": results}, indent=1))
    lines = [f"CPU flags: {' '.join(flags)}; {os.cpu_count()} cores.", ""]
    for model, res in results.items():
        lines += [f"### {model}", "",
                  "| method | agreement tune (95% CI) | agreement final (95% CI) | accuracy "
                  "final | latency ratio 1t / 2t | size MB | quantise s (AdaRound CPU s) | "
                  "peak RSS MB | float layers | load |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for method, r in res.items():
            if "error" in r:
                continue
            lat = r["latency"]
            rec = (r.get("settings") or {}).get("record") or {}
            cpu = f" ({rec['cpu_seconds']:.0f})" if "cpu_seconds" in rec else ""
            lines.append(
                f"| {method} | {study._ci(r['tune'])} | {study._ci(r['final'])} | "
                f"{study._acc(r['final'])} | {lat['1']['ratio']:.2f} / {lat['2']['ratio']:.2f} "
                f"| {r['size_mb']:.2f} | {r['quantize_s']:.0f}{cpu} | {r['peak_rss_mb']:.0f} | "
                f"{r['float_layers']}/{r['compute_layers']} | {r['load_average'][0]:.1f} |")
        lines.append("")
    md = DOC.with_suffix(".md")
    text = md.read_text() if md.exists() else "<!-- table -->\n<!-- table -->\n"
    head, _, rest = text.partition("<!-- table -->\n")
    _, _, tail = rest.partition("<!-- table -->\n")
    md.write_text(head + "<!-- table -->\n" + "\n".join(lines) + "<!-- table -->\n" + tail)


def untouched(model: str, names: list[str], skip: int = 64) -> None:
    """Agreement with fp32 on the frames no rounding was fitted on: tune[skip:] + final."""
    import numpy as np

    from edgeinfer.parity.runners import ArtifactRunner
    from edgeinfer.parity.stats import wilson

    tune, final = study.frames(model, "tune").frames[skip:], study.frames(model, "final").frames
    ref_t = np.load(study.OUT / f"{model}-fp32-tune.npy").argmax(-1)[skip:]
    ref_f = np.load(study.OUT / f"{model}-fp32-final.npy").argmax(-1)
    for m in names:
        r = ArtifactRunner(str(study.OUT / f"{model}-{m}.onnx"), threads=2)
        a = int((r.run(tune).argmax(-1) == ref_t).sum())
        b = int((r.run(final).argmax(-1) == ref_f).sum())
        n = len(tune) + len(final)
        lo, hi = wilson(a + b, n)
        study.say(f"{m}: {(a + b) / n:.2%} [{lo:.2%}, {hi:.2%}] on {n} frames (tune[{skip}:] "
                  f"{a}/{len(tune)}, final {b}/{len(final)})")


def main(argv: list[str]) -> None:
    cmd, *rest = argv
    study.OUT.mkdir(parents=True, exist_ok=True)
    if cmd == "report":
        report()
    elif cmd == "quantize":
        quantize(*rest)
    elif cmd == "untouched":
        untouched(rest[0], rest[1:])
    else:
        model, *names = rest
        for n in names:
            study.evaluate(model, n)


if __name__ == "__main__":
    main(sys.argv[1:])
