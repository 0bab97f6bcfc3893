"""Which int8 settings make EfficientNet-Lite0 agree with fp32 on real photos (docs/int8/).

    python tools/int8_photo_study.py HELDOUT_DIR FP32.onnx OUT_DIR [CONFIG ...]

HELDOUT_DIR: a labelled image folder (one subfolder per class index) that is NOT used for
calibration, e.g. one photo per ImageNet class. Each configuration quantises the fp32
artifact with onnxruntime (target settings x calibration set x method), runs it on every
held-out photo, and records top-1 agreement with fp32 (95% Wilson interval), accuracy,
max |dprob| and batch-1 latency. Results are cached per configuration in OUT_DIR/*.json.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import onnx

from edgeinfer.converter.int8.onnx_quant import quantize_int8
from edgeinfer.data.calibration import calibration_frames
from edgeinfer.data.frames import load_frames
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.parity.stats import accuracy, compare
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.runtime.metadata import read_metadata

#: name -> (target, calibration set, method)
CONFIGS = {
    "avx2-photos6-minmax": ("x86-avx2", "photos6", "minmax"),
    "vnni-photos6-minmax": ("x86-vnni", "photos6", "minmax"),
    "vnni-package40-minmax": ("x86-vnni", "package40", "minmax"),
    "vnni-package400aug-minmax": ("x86-vnni", "package400aug", "minmax"),
    "vnni-package400aug-percentile": ("x86-vnni", "package400aug", "percentile"),
    "vnni-package400aug-entropy": ("x86-vnni", "package400aug", "entropy"),
    "avx2-package400aug-minmax": ("x86-avx2", "package400aug", "minmax"),
    "avx2-package400aug-percentile": ("x86-avx2", "package400aug", "percentile"),
    "vnni-package40-percentile": ("x86-vnni", "package40", "percentile"),
    "vnni-package40-entropy": ("x86-vnni", "package40", "entropy"),
    "vnni-package400aug-minmax-floathead": ("x86-vnni", "package400aug", "minmax", True),
    "vnni-package40-percentile-floathead": ("x86-vnni", "package40", "percentile", True),
    # fashion (HELDOUT_DIR builtin:fashion-test, the fashion fp32 artifact)
    "fashion-avx2-minmax": ("x86-avx2", "fashion-train256", "minmax"),
    "fashion-vnni-minmax": ("x86-vnni", "fashion-train256", "minmax"),
}
#: TFLite int8 (ai-edge-quantizer, min/max ranges): name -> calibration set
TFLITE = {"tflite-photos6": "photos6", "tflite-package400aug": "package400aug"}


def tflite_int8(name: str, spec, o: Path) -> bytes:
    """Convert through the public API, calibrating on a folder of the set's frames."""
    import cv2

    from edgeinfer.converter.api import convert

    folder = o / f"cal-{TFLITE[name]}"
    if not folder.exists():
        folder.mkdir()
        for i, f in enumerate(cal_set(TFLITE[name], spec)):
            cv2.imwrite(str(folder / f"{i:04d}.png"), f)
    out = o / f"{name}.tflite"
    if not out.exists():
        convert("efficientnet-lite0", out, quantize="int8", calibration=str(folder),
                calibration_limit=1000)
    return out.read_bytes()


def cal_set(name: str, spec) -> list[np.ndarray]:
    if name == "photos6":
        return load_frames("builtin:photos", spec).frames
    if name == "package40":
        return calibration_frames(1000, augmented=False)[0]
    if name == "package400aug":
        return calibration_frames(400)[0]
    if name == "fashion-train256":
        return load_frames("builtin:fashion-train", spec, limit=256).frames
    raise KeyError(name)


def latency_ms(runner: ArtifactRunner, frames: list[np.ndarray], n: int = 40) -> float:
    x = [f[None] for f in frames[:n]]
    for f in x[:3]:
        runner.backend.run(f)
    t = []
    for f in x:
        s = time.perf_counter()
        runner.backend.run(f)
        t.append(time.perf_counter() - s)
    return float(np.median(t) * 1e3)


def main(heldout: str, fp32_path: str, out: str, names: list[str]) -> None:
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    meta = read_metadata(fp32_path)
    fs = load_frames(heldout, meta.spec, class_names=meta.labels)
    ref_file = o / "fp32_probs.npy"
    fp32_runner = ArtifactRunner(fp32_path, name="onnx-fp32", threads=2)
    if ref_file.exists():
        ref = np.load(ref_file)
    else:
        ref = fp32_runner.run(fs.frames)
        np.save(ref_file, ref)
        (o / "fp32.json").write_text(json.dumps({
            "n": len(ref), "accuracy": accuracy(ref, fs.labels),
            "latency_ms": latency_ms(fp32_runner, fs.frames)}, indent=1))
    model = onnx.load_model(fp32_path)
    for name in names or list(CONFIGS):
        dest = o / f"{name}.json"
        if dest.exists():
            continue
        t0 = time.perf_counter()
        if name in TFLITE:
            target, cal_name, method, n_cal = "any", TFLITE[name], "minmax", -1
            blob = tflite_int8(name, meta.spec, o)
        else:
            target, cal_name, method, *head = CONFIGS[name]
            cal = cal_set(cal_name, meta.spec)
            n_cal = len(cal)
            blob = quantize_int8(model, cal, method=method, target=target,
                                 float_head=bool(head and head[0])).SerializeToString()
        t_cal = time.perf_counter() - t0
        runner = ArtifactRunner(blob, name=name, threads=2)
        probs = runner.run(fs.frames)
        cmp = compare(ref, probs, tolerance("onnx", "int8"), "onnx-fp32", name)
        res = {"config": name, "target": target, "calibration": cal_name,
               "calibration_frames": n_cal, "method": method,
               "quantize_seconds": t_cal, **cmp.to_dict(),
               "accuracy": accuracy(probs, fs.labels),
               "accuracy_fp32": accuracy(ref, fs.labels),
               "latency_ms": latency_ms(runner, fs.frames),
               "load_average": list(os.getloadavg())}
        dest.write_text(json.dumps(res, indent=1))
        print(f"{name}: agreement {cmp.top1_agreement:.2%} [{cmp.top1_ci95[0]:.1%}, "
              f"{cmp.top1_ci95[1]:.1%}] acc {res['accuracy']['accuracy']:.2%} max|dp| "
              f"{cmp.max_abs:.3f} lat {res['latency_ms']:.1f} ms", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
