"""Predictions on a video file or a camera, frame by frame, with a running frame rate.

OpenCV's VideoCapture delivers BGR frames, which is what an artifact with
``frame_color='BGR'`` eats; the Predictor converts for other colour orders.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import cv2

from edgeinfer.errors import ImageDecodeError
from edgeinfer.runtime.predictor import Prediction, Predictor


@dataclass(frozen=True)
class FrameResult:
    index: int
    predictions: list[Prediction]
    latency_ms: float  # this frame's predict() call
    fps: float  # frames per second since the first frame, decode included


def open_capture(source: str) -> cv2.VideoCapture:
    """A file path, or a camera index such as ``0`` (``/dev/video0``)."""
    cap = cv2.VideoCapture(int(source)) if source.isdigit() else cv2.VideoCapture(source)
    if not cap.isOpened():
        raise ImageDecodeError(f"cannot open video {source!r}: not a readable video file or "
                               "camera (check the path or the device index)")
    return cap


def predict_video(predictor: Predictor, source: str, top_k: int = 1,
                  max_frames: int | None = None) -> Iterator[FrameResult]:
    """Yield one result per decoded frame until the stream ends or ``max_frames``."""
    cap = open_capture(source)
    try:
        start = time.perf_counter()
        index = 0
        while max_frames is None or index < max_frames:
            ok, frame = cap.read()
            if not ok:
                if index == 0:
                    raise ImageDecodeError(f"video {source!r} has no decodable frame")
                break
            t = time.perf_counter()
            preds = predictor.predict(frame, top_k=top_k)
            now = time.perf_counter()
            index += 1
            yield FrameResult(index - 1, preds, (now - t) * 1e3, index / (now - start))
    finally:
        cap.release()
