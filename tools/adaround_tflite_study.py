"""AdaRound on TFLite int8 (issue 26.3), measured: docs/int8/adaround_tflite.{md,json}.

    python tools/adaround_tflite_study.py run MODEL METHOD...   # MODEL fashion | effnet
    python tools/adaround_tflite_study.py report docs/int8/adaround_tflite
    python tools/adaround_tflite_study.py arm64 WORK ARTIFACT=PACK...  # then scripts/arm64-check

MODEL's fp32 .tflite artifact is ``out/B/<fashion|efficientnet-lite0>.tflite`` (written by
``edgeinfer convert NAME --format tflite``). METHOD ``minmax`` is ai_edge_quantizer's
full-integer int8 as ``convert --quantize int8`` builds it (nearest rounding), ``adaround``
the same model with its weights re-rounded (converter/int8/adaround_tflite.py;
``adaround-fN``: fitted on N frames instead of 64). Frames:
fashion calibrates (and fits) on the first 256 train images and is judged on the 10,000
test images; EfficientNet-Lite0 calibrates and fits on out/imagenet_split/tune (600 photos)
and is judged on out/imagenet_split/final (400 photos that chose nothing). Each method
quantises in its own process (``quantize``), so its peak RSS is its own.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "out" / "B"
SPLIT = ROOT / "out" / "imagenet_split"
MODELS = {"fashion": ("fashion.tflite", ("builtin:fashion-train", 256),
                      ("builtin:fashion-test", None)),
          "effnet": ("efficientnet-lite0.tflite", (str(SPLIT / "tune"), None),
                     (str(SPLIT / "final"), None))}


def say(msg: str) -> None:
    print(f"[adaround-tflite {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def frames(model: str, part: str):
    from edgeinfer.data.frames import load_frames
    from edgeinfer.runtime.metadata import read_metadata

    name, tune, final = MODELS[model]
    meta = read_metadata(str(OUT / name))
    src, limit = tune if part == "tune" else final
    return load_frames(src, meta.spec, limit=limit, class_names=meta.labels)


def quantize(model: str, method: str) -> None:
    """The int8 artifact of ``method`` at out/B/<model>-<method>.tflite, with its record."""
    from edgeinfer.converter.export.tflite_metadata import embed_metadata
    from edgeinfer.converter.int8.tflite_quant import TfliteInt8
    from edgeinfer.converter.quiet import captured
    from edgeinfer.runtime.metadata import read_metadata

    data = (OUT / MODELS[model][0]).read_bytes()
    meta = read_metadata(data)
    cal = frames(model, "tune").frames
    hw = tuple(meta.provenance["frame_size"])
    t0 = time.perf_counter()
    with captured(False):
        base, _, frames_ = method.partition("-f")  # adaround-f32: AdaRound on 32 frames
        q = TfliteInt8(data, meta.spec, hw, cal, method=base, progress=say)
        if frames_:
            q.rounding.kw["frames"] = int(frames_)
        qmodel = q.build()
    wall = time.perf_counter() - t0
    meta.provenance["quantize"] = "int8"
    meta.provenance["int8_rounding"] = q.rounding.info if q.rounding else {"method": method}
    (OUT / f"{model}-{method}.tflite").write_bytes(embed_metadata(qmodel, meta.to_props()))
    info = {"method": method, "quantise_s": wall, "calibration_frames": len(cal),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "fixed_channels": q.fixed, "rounding": meta.provenance["int8_rounding"],
            "load_after": list(os.getloadavg())}
    (OUT / f"{model}-{method}.quant.json").write_text(json.dumps(info, indent=1))


def probs_of(path: Path, fs, threads: int = 2) -> np.ndarray:
    from edgeinfer.parity.runners import ArtifactRunner

    return ArtifactRunner(str(path), name=path.stem, threads=threads).run(fs.frames)


def latency_ratio(path: Path, ref: Path, fs, threads: int, hw: tuple[int, int]) -> dict:
    """p50 int8 / p50 fp32 at batch 1 on frames of the artifact's frame size (its
    ``frame`` signature, as a camera feeds it), interleaved by the one timing harness."""
    from edgeinfer.converter.int8.conversion import at_frame_size
    from edgeinfer.parity.runners import ArtifactRunner
    from edgeinfer.runtime.timing import interleaved, summarize

    xs = [at_frame_size(f if f.ndim == 3 else f[..., None], hw) for f in fs.frames[:16]]
    cases = {}
    for name, p in (("int8", path), ("fp32", ref)):
        b = ArtifactRunner(str(p), name=name, threads=threads).backend
        it = iter(range(10**9))
        cases[name] = (lambda b=b, it=it: b.run(xs[next(it) % len(xs)]))
    t = interleaved(cases, {"int8": 80, "fp32": 80}, warmup=10, rounds=8)
    s = {k: summarize(v)["p50"] for k, v in t.items()}
    return {"int8_ms": s["int8"], "fp32_ms": s["fp32"], "ratio": s["int8"] / s["fp32"]}


def evaluate(model: str, method: str) -> dict:
    from edgeinfer.parity.stats import accuracy, compare
    from edgeinfer.parity.tolerances import tolerance
    from edgeinfer.runtime.metadata import read_metadata

    fp32 = OUT / MODELS[model][0]
    path = OUT / f"{model}-{method}.tflite"
    res = json.loads((OUT / f"{model}-{method}.quant.json").read_text())
    hw = tuple(read_metadata(str(fp32)).provenance["frame_size"])
    for part in ("tune", "final"):
        fs = frames(model, part)
        cache = OUT / f"{model}-fp32-{part}.npy"
        if not cache.exists():
            np.save(cache, probs_of(fp32, fs))
        ref = np.load(cache)
        p = probs_of(path, fs)
        cmp = compare(ref, p, tolerance("tflite", "int8"), "fp32", method)
        res[part] = {"n": cmp.n, "agreement": cmp.top1_agreement, "ci95": list(cmp.top1_ci95),
                     "max_abs": cmp.max_abs,
                     "accuracy": accuracy(p, fs.labels) if fs.labels is not None else None,
                     "accuracy_fp32": accuracy(ref, fs.labels) if fs.labels is not None
                     else None}
        say(f"{model} {method} {part}: agreement {cmp.top1_agreement:.2%} "
            f"[{cmp.top1_ci95[0]:.2%}, {cmp.top1_ci95[1]:.2%}] n={cmp.n}")
        if part == "final":
            res["latency"] = {str(t): latency_ratio(path, fp32, fs, t, hw) for t in (1, 2)}
    res["size_mb"] = path.stat().st_size / 1e6
    res["fp32_size_mb"] = fp32.stat().st_size / 1e6
    res["load_average"] = list(os.getloadavg())
    (OUT / f"{model}-{method}.result.json").write_text(json.dumps(res, indent=1))
    say(f"{model} {method}: latency 1t {res['latency']['1']['ratio']:.2f}x, 2t "
        f"{res['latency']['2']['ratio']:.2f}x; {res['size_mb']:.2f} MB")
    return res


def run(model: str, methods: list[str]) -> None:
    for method in methods:
        if not (OUT / f"{model}-{method}.quant.json").exists():
            say(f"{model} {method}: quantising")
            subprocess.run([sys.executable, __file__, "quantize", model, method], check=True,
                           cwd=ROOT)
        evaluate(model, method)


def _ci(r: dict) -> str:
    return f"{r['agreement']:.2%} [{r['ci95'][0]:.2%}, {r['ci95'][1]:.2%}]"


def report(dest: Path) -> None:
    """dest.json (every result) and one table per model printed (pasted into dest.md)."""
    flags = sorted(set(subprocess.run(
        ["grep", "-o", "-w", r"avx2\|avx512f\|avx512_vnni", "/proc/cpuinfo"],
        capture_output=True, text=True).stdout.split()))
    allres = {"cpu_flags": flags, "cores": os.cpu_count(), "results": {}}
    lines = []
    for model in MODELS:
        rows = []
        for method in ("minmax", "adaround", "adaround-f32"):
            f = OUT / f"{model}-{method}.result.json"
            if not f.exists():
                continue
            r = json.loads(f.read_text())
            allres["results"][f"{model}-{method}"] = r
            acc = r["final"]["accuracy"]
            lat = r["latency"]
            rows.append(f"| {method} | {_ci(r['tune'])} | {_ci(r['final'])} | "
                        f"{acc['accuracy'] if acc else float('nan'):.2%} | "
                        f"{lat['1']['ratio']:.2f} / {lat['2']['ratio']:.2f} | "
                        f"{r['size_mb']:.2f} | {r['quantise_s']:.0f} | "
                        f"{r['peak_rss_mb']:.0f} | {r['load_average'][0]:.1f} |")
        if rows:
            lines += [f"### {model}", "", "| method | agreement tune (95% CI) | agreement "
                      "final (95% CI) | accuracy final | latency ratio 1t / 2t | size MB | "
                      "quantise s | peak RSS MB | load |", "|---|---|---|---|---|---|---|---|---|",
                      *rows, ""]
    Path(str(dest) + ".json").write_text(json.dumps(allres, indent=1))
    print(f"CPU flags: {' '.join(flags)}; {os.cpu_count()} cores.\n\n" + "\n".join(lines))


PACKS = {"fashion.pack": ("fashion", "builtin:fashion-test", 200),
         "effnet.pack": ("efficientnet-lite0", str(SPLIT / "final"), 30)}


def arm64(work: Path, items: list[str]) -> None:
    """WORK/in for ``ARM64_WORK=WORK ARM64_PREPARED=1 scripts/arm64-check``: the packs
    (fashion: 200 test images; EfficientNet-Lite0: 30 of the 400 final photos), the
    artifacts given as PATH=PACK, and pairs.txt."""
    from edgeinfer.check.verify.pack import build_pack
    from edgeinfer.data.packfile import write_pack

    d = work / "in"
    d.mkdir(parents=True, exist_ok=True)
    pairs = [item.split("=", 1) for item in items]
    for pack in {p for _a, p in pairs}:
        if not (d / pack).exists():
            src, data, limit = PACKS[pack]
            write_pack(build_pack(src, data, limit=limit, progress=say), d / pack)
    for art, _p in pairs:
        (d / Path(art).name).write_bytes(Path(art).read_bytes())
    (d / "pairs.txt").write_text("".join(f"{Path(a).name} {p}\n" for a, p in pairs))


def main(argv: list[str]) -> None:
    if argv[0] == "quantize":
        quantize(argv[1], argv[2])
    elif argv[0] == "run":
        run(argv[1], argv[2:])
    elif argv[0] == "arm64":
        arm64(Path(argv[1]), argv[2:])
    elif argv[0] == "report":
        report(Path(argv[1]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
