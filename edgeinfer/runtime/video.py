"""``edgeinfer predict --video``: one result per frame, built on :class:`Stream`.

Kept as a thin adapter so the command's output (frame index, fps, latency, top-k) stays
what it was; cameras and URLs get the Stream's latest-frame semantics, files are read
frame by frame. OpenCV delivers BGR frames, which is what an artifact with
``frame_color='BGR'`` eats; the Predictor converts for other colour orders.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from edgeinfer.runtime.predictor import Predictor
from edgeinfer.runtime.stream import Stream, open_capture
from edgeinfer.runtime.topk import Prediction

__all__ = ["FrameResult", "open_capture", "predict_video"]


@dataclass(frozen=True)
class FrameResult:
    index: int
    predictions: list[Prediction]
    latency_ms: float  # this frame's prediction
    fps: float  # frames per second since the first frame, decode included


def predict_video(predictor: Predictor, source: str, top_k: int = 1,
                  max_frames: int | None = None) -> Iterator[FrameResult]:
    """Yield one result per processed frame until the stream ends or ``max_frames``."""
    with Stream(predictor, source, top_k=top_k, max_frames=max_frames) as stream:
        for r in stream:
            yield FrameResult(r.frame_id, r.predictions, r.infer_ms, r.fps)
