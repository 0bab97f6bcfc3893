"""Antialiased resizing vs Pillow, before and after issue 25 (item 3): grey levels per image
kind and execution, and the ONNX prefix's speed. Writes docs/resize_pillow.json and .md.

    # the code before the change, from a git archive of its commit:
    git archive <base> edgeinfer | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before python tools/pillow_resample_study.py --phase before
    python tools/pillow_resample_study.py --phase after

Each phase measures whatever ``edgeinfer`` it imports and merges its figures into the JSON
under its name. The ``before`` phase also saves its ONNX prefixes; the ``after`` phase
times both generations interleaved, run for run, in one process: on a shared machine the
load moves between runs, so only an interleaved comparison is fair. The oracle is PIL
``Image.resize`` (BILINEAR / BICUBIC) on the uint8 image: what a PIL-fed pipeline trains on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
FRAME_HW = (240, 320)
SIZES = {"down": (224, 200), "up": (397, 541), "mixed": (131, 347)}
INTERPS = ("linear", "cubic")
CACHE = Path(os.environ.get("PILLOW_STUDY_CACHE", "/tmp/pillow_resample_study"))


def frames() -> dict[str, list[np.ndarray]]:
    """The three kinds, all FRAME_HW (one TFLite conversion per filter and size): crops
    of the bundled real photos; one-pixel stripes and a checkerboard; seeded noise at 1/8
    size blown up with nearest neighbour (flat blocks, full-range steps)."""
    from PIL import Image

    from edgeinfer.data.datasets import sample_photos

    h, w = FRAME_HW
    photos = [np.ascontiguousarray(p[:h, :w]) for p in sample_photos().values()
              if p.shape[0] >= h and p.shape[1] >= w]
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = np.stack([(xx % 2) * 255, (yy % 2) * 255, ((xx + yy) % 2) * 230 + 10],
                       -1).astype(np.uint8)
    rng = np.random.default_rng(25)
    noise = [np.asarray(Image.fromarray(rng.integers(0, 256, (h // 8, w // 8, 3),
                                                     dtype=np.uint8)).resize((w, h), 0))
             for _ in range(3)]
    return {"photos": photos, "stripes": [stripes], "upscaled noise": noise}


def pillow(frame: np.ndarray, size: tuple[int, int], interp: str) -> np.ndarray:
    from PIL import Image

    code = {"linear": Image.BILINEAR, "cubic": Image.BICUBIC}[interp]
    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), code), np.float32)


def executions(spec, with_tflite: bool) -> dict:
    """name -> callable(uint8 frame) -> resized pixels, for the imported edgeinfer."""
    import onnxruntime as ort
    import torch

    from edgeinfer.converter.preprocess_graph import build_preprocess_model
    from edgeinfer.spec_torch import PreprocessModule

    sess = ort.InferenceSession(build_preprocess_model(spec).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    eager, static = PreprocessModule(spec), PreprocessModule(spec, static_resize=True)

    def torch_run(module):
        def run(f):
            with torch.inference_mode():
                return module(torch.from_numpy(f[None].copy())).numpy()
        return run

    runs = {"numpy reference": spec.reference,
            "onnx prefix": lambda f: sess.run(None, {"frame": f[None]})[0],
            "torch module": torch_run(eager), "torch static (TFLite module)": torch_run(static)}
    if with_tflite:
        import litert_torch
        from ai_edge_litert.interpreter import Interpreter

        sample = (torch.zeros(1, *FRAME_HW, 3, dtype=torch.uint8),)
        with torch.inference_mode(False), torch.no_grad():
            edge = litert_torch.convert(static.eval(), sample, strict_export=False)
        runner = Interpreter(model_content=bytes(edge.model_content())).get_signature_runner()
        runs["tflite frame signature"] = lambda f: next(iter(runner(args_0=f[None]).values()))
    return runs


def grey_levels(with_tflite: bool) -> dict:
    """{interp: {kind: {execution: {max, mean}}}} over every frame and size."""
    from edgeinfer import PreprocessSpec

    kinds = frames()
    out: dict = {}
    for interp in INTERPS:
        acc: dict = {}
        for size in SIZES.values():
            spec = PreprocessSpec(size=size, interpolation=interp, antialias=True, scale=1.0,
                                  frame_color="RGB", model_color="RGB", layout="NHWC")
            runs = executions(spec, with_tflite)
            for kind, fs in kinds.items():
                for f in fs:
                    want = pillow(f, size, interp)
                    for name, run in runs.items():
                        d = np.abs(np.asarray(run(f), np.float32).reshape(want.shape) - want)
                        a = acc.setdefault(kind, {}).setdefault(name, [0.0, 0.0, 0])
                        a[0], a[1], a[2] = max(a[0], float(d.max())), a[1] + float(d.sum()), \
                            a[2] + d.size
        out[interp] = {k: {n: {"max": round(v[0], 3), "mean": round(v[1] / v[2], 4)}
                           for n, v in ex.items()} for k, ex in acc.items()}
    return out


def prefix_models() -> dict[str, bytes]:
    """The prefix timed in docs/resize.md: 640x480 frame -> shorter side 224 -> 224 crop."""
    from edgeinfer import PreprocessSpec
    from edgeinfer.converter.preprocess_graph import build_preprocess_model

    return {interp: build_preprocess_model(PreprocessSpec(
        size=(224, 224), resize="shorter_crop", interpolation=interp, antialias=True,
        mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))).SerializeToString()
        for interp in INTERPS}


def timings(models: dict[str, dict[str, bytes]], runs: int) -> dict:
    """Median and min ms per generation and filter, 1 thread, runs interleaved."""
    import onnxruntime as ort

    from edgeinfer.data.datasets import sample_photos

    photo = sample_photos()["china"]  # 427 x 640: padded to 480 x 640 by edge rows
    frame = np.ascontiguousarray(np.pad(photo, ((0, 53), (0, 0), (0, 0)), mode="edge"))[None]
    so = ort.SessionOptions()
    so.intra_op_num_threads = so.inter_op_num_threads = 1
    sessions = {(gen, interp): ort.InferenceSession(m, so, providers=["CPUExecutionProvider"])
                for gen, ms in models.items() for interp, m in ms.items()}
    times: dict = {k: [] for k in sessions}
    for s in sessions.values():
        for _ in range(3):
            s.run(None, {"frame": frame})
    for _ in range(runs):
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(None, {"frame": frame})
            times[k].append((time.perf_counter() - t) * 1e3)
    return {f"{gen}/{interp}": {"median_ms": round(float(np.median(v)), 2),
                                "min_ms": round(float(np.min(v)), 2)}
            for (gen, interp), v in times.items()}


def machine() -> dict:
    flags = sorted(set(subprocess.run("grep -o 'avx[^ ]*' /proc/cpuinfo", shell=True,
                                      capture_output=True, text=True).stdout.split()))
    import onnxruntime
    import PIL

    return {"cpu_flags": flags, "uptime": subprocess.run(["uptime"], capture_output=True,
                                                         text=True).stdout.strip(),
            "cores": os.cpu_count(), "onnxruntime": onnxruntime.__version__,
            "pillow": PIL.__version__}


def write_md(data: dict, path: Path) -> None:
    lines = ["# Antialiased resizing vs Pillow's uint8 resize (issue 25, item 3)", "",
             "Written by `tools/pillow_resample_study.py` from `docs/resize_pillow.json`. "
             "Grey levels (0..255) between each execution and PIL `Image.resize` (BILINEAR / "
             "BICUBIC on the RGB uint8 image), worst pixel / mean, over every frame of the "
             f"kind at {FRAME_HW[0]}x{FRAME_HW[1]} and three sizes: "
             + ", ".join(f"{k} {v[0]}x{v[1]}" for k, v in SIZES.items()) + ". Photos: crops "
             "of the bundled real photos; stripes: one-pixel stripes both ways and a "
             "checkerboard; upscaled noise: seeded noise at 1/8 size blown up with nearest "
             "neighbour.", ""]
    for phase in ("before", "after"):
        if phase not in data:
            continue
        d = data[phase]
        lines += [f"## {phase} (`{d['edgeinfer']}`)", "",
                  f"Machine: {d['machine']['cores']} cores, flags "
                  f"{', '.join(d['machine']['cpu_flags'])}; `{d['machine']['uptime']}`; "
                  f"Pillow {d['machine']['pillow']}, onnxruntime "
                  f"{d['machine']['onnxruntime']}.", ""]
        for interp, kinds in d["grey_levels"].items():
            names = list(next(iter(kinds.values())))
            lines += [f"**{interp}, antialiased** (max / mean)", "",
                      "| kind | " + " | ".join(names) + " |",
                      "|---" * (len(names) + 1) + "|"]
            lines += [f"| {k} | " + " | ".join(f"{ex[n]['max']:g} / {ex[n]['mean']:.4f}"
                                               for n in names) + " |"
                      for k, ex in kinds.items()]
            lines.append("")
    if "timings" in data.get("after", {}):
        t = data["after"]["timings"]
        lines += ["## ONNX prefix speed (640x480 uint8 frame -> 224 crop, 1 thread, ms)", "",
                  "Both generations timed interleaved in one process (the `before` models "
                  "saved by its phase); load as in the `after` uptime above.", "",
                  "| filter | before median / min | after median / min |", "|---|---|---|"]
        for interp in INTERPS:
            b, a = t.get(f"before/{interp}"), t[f"after/{interp}"]
            bs = f"{b['median_ms']} / {b['min_ms']}" if b else "-"
            lines.append(f"| {interp} | {bs} | {a['median_ms']} / {a['min_ms']} |")
        lines.append("")
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phase", choices=("before", "after"), required=True)
    ap.add_argument("--runs", type=int, default=40, help="timed runs per prefix")
    ap.add_argument("--no-tflite", action="store_true", help="skip the litert conversions")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "resize_pillow.json")
    ap.add_argument("--label", help="what code this is (e.g. 'git 8bac16d'); default: "
                    "the path of the edgeinfer imported")
    args = ap.parse_args()
    import edgeinfer

    CACHE.mkdir(parents=True, exist_ok=True)
    result = {"edgeinfer": args.label or str(Path(edgeinfer.__file__).parent),
              "machine": machine(),
              "grey_levels": grey_levels(not args.no_tflite)}
    models = {args.phase: prefix_models()}
    for interp, m in models[args.phase].items():
        (CACHE / f"{args.phase}_{interp}.onnx").write_bytes(m)
    if args.phase == "after":
        before = {i: (CACHE / f"before_{i}.onnx").read_bytes() for i in INTERPS
                  if (CACHE / f"before_{i}.onnx").is_file()}
        if before:
            models["before"] = before
        result["timings"] = timings(models, args.runs)
        result["machine"]["uptime_after_timing"] = machine()["uptime"]
    data = json.loads(args.out.read_text()) if args.out.is_file() else {}
    data[args.phase] = result
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    write_md(data, args.out.with_suffix(".md"))
    print(json.dumps(result.get("timings", {}), indent=1))


if __name__ == "__main__":
    main()
