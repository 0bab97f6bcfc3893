"""The detector audit's rule, set and measured (issue 28 point 3; docs/detection/culprits.md).

For the bundled fashion-detector, each scenario GIVES the audit a spec (the right one, and
one mistake at a time: stretch, BGR, no /255, /255 twice, no mean/std) and records every
hypothesis's figures, labelled (F1 vs the true boxes) and label-free (BN fit, confidence
mass). Frame sets: ``rule`` - convert's audit frames (64, the six bundled photos, aspects
1:2 to 2:1: ``converter.detect_audit.audit_frames``), on which the label-free threshold
was chosen; ``measure`` - 96 frames on the 100 ImageNet sample photos held out from the
detector's training (tools/train_detector.py), which chose nothing; ``gate`` - the
detection gate's 48 parity frames (3:4, 4:3, square), for comparison. BlazeFace (served
as is, no BN, no true boxes) is audited on the 14 bench face frames: its documented fit
must not be refused.

    nice -n 5 .venv/bin/python tools/detect_culprit_study.py [--out docs/detection/culprits.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeinfer.diagnose.detect_culprits import audit_detector  # noqa: E402

IMAGENET = Path("/work/.mirror/EliSchwartz+imagenet-sample-images/repo")


def held_out_frames(n: int = 96, seed: int = 4242) -> list:
    """Frames on the 100 held-out ImageNet photos, Fashion-MNIST test items, every aspect
    from 1:2 to 2:1 (the training tool's held-out recipe, another seed)."""
    sys.path.insert(0, str(ROOT / "tools"))
    from train_detector import imagenet_photos

    from edgeinfer.converter.detect_frames import make_frame
    from edgeinfer.data.datasets import load_fashion_mnist

    photos = imagenet_photos(IMAGENET)[-100:]
    items, labels = load_fashion_mnist("test")
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ratio = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
        aspect = "portrait" if ratio > 1.05 else "landscape" if ratio < 0.95 else "square"
        out.append(make_frame(photos[i % len(photos)], items, labels, rng, ratio=ratio,
                              long_side=int(rng.integers(160, 481)), aspect=aspect))
    return out


def scenarios(spec, det):
    c = spec
    return {
        "right (letterbox)": (spec, det),
        "stretch": (spec, replace(det, fit="stretch")),
        "BGR instead of RGB": (replace(spec, model_color="BGR"), det),
        "no /255": (replace(c, scale=1.0), det),
        "/255 twice": (replace(c, scale=c.scale / 255.0), det),
        "no mean/std": (replace(c, mean=(0.0,), std=(1.0,)), det),
    }


def run_fashion(frames, name, labelled=True):
    import torch

    from edgeinfer.converter.detect_convert import load_detector
    from edgeinfer.diagnose.detect_culprits import CorePipeline

    src = load_detector("fashion-detector")

    def core(x):
        with torch.inference_mode():
            b, s = src.module(torch.from_numpy(np.ascontiguousarray(x)))
        return b.numpy(), s.numpy()

    pipe = CorePipeline(core, src.detection.nms, src.module)
    imgs = [f.image for f in frames]
    truth = [(f.boxes, f.classes) for f in frames] if labelled else None
    out = {}
    for scen, (spec, det) in scenarios(src.spec, src.detection).items():
        t = time.perf_counter()
        r = audit_detector(pipe, spec, det, imgs, truth)
        rl = audit_detector(pipe, spec, det, imgs, None)
        out[scen] = {"labelled": r.to_dict(), "label_free": rl.to_dict()}
        print(f"[{name}] {scen}: {r.verdict}/{r.culprit} | free {rl.verdict}/{rl.culprit} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
        print("   " + r.message)
        print("   " + rl.message)
        for line in r.table():
            print(line)
    return out


def run_blazeface():
    from edgeinfer.check.bench.detect_reference import face_frames
    from edgeinfer.diagnose.detect_culprits import DetectorPipeline, detect_variants
    from edgeinfer.runtime.detect.detector import Detector

    out = {}
    for variant in ("short_range", "full_range"):
        d = Detector.blazeface(variant)
        imgs = list(face_frames().values())
        vs = detect_variants(d.spec, d.task, imgs, fits=("pad_resize", "letterbox", "stretch"))
        r = audit_detector(DetectorPipeline(d), d.spec, d.task, imgs, None, variants=vs)
        out[variant] = r.to_dict()
        print(f"[blazeface {variant}] {r.verdict}: {r.message}")
        for line in r.table():
            print(line)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs/detection/culprits.json"))
    ap.add_argument("--skip-blazeface", action="store_true")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    from edgeinfer.converter.detect_frames import parity_frames

    t0 = time.perf_counter()
    from edgeinfer.converter.detect_audit import audit_frames

    res = {"rule_frames": "convert's audit frames: 64 frames on the six bundled photos, "
                          "aspect 1:2 to 2:1 log-uniform, long side 160-480, Fashion-MNIST "
                          "test items (converter/detect_audit.audit_frames, seed 2829)",
           "measure_frames": "96 frames on the 100 ImageNet sample photos held out from "
                             "training (same recipe, seed 4242)",
           "gate_frames": "the gate's 48 parity frames (16 portrait 3:4, 16 landscape 4:3, "
                          "16 square; bundled photos)"}
    res["rule"] = run_fashion(audit_frames(), "rule")
    res["measure"] = run_fashion(held_out_frames(), "measure")
    res["gate"] = run_fashion(parity_frames(), "gate")
    if not a.skip_blazeface:
        res["blazeface"] = run_blazeface()
    flags = subprocess.run("grep -o -w 'avx2\\|avx512f\\|avx512_vnni' /proc/cpuinfo | sort -u",
                           shell=True, capture_output=True, text=True).stdout.split()
    res["machine"] = {"cpu_flags": flags, "load": os.getloadavg(),
                      "platform": platform.platform(), "seconds": time.perf_counter() - t0}
    Path(a.out).write_text(json.dumps(res, indent=1, default=float) + "\n")
    print(f"wrote {a.out} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
