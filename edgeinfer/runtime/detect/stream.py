"""Boxes on a camera, video file or stream URL: the runtime's :class:`Stream` (latest-frame
semantics, dropping and counting stale frames, realtime replay, stop from any thread) with
a detector in place of the classifier.

OpenCV delivers BGR frames; a detector whose frames are RGB (BlazeFace) gets each frame
converted first, so the boxes are those ``detector(rgb_frame)`` gives in process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from edgeinfer.runtime.detect.detector import Detection, DetectorLike
from edgeinfer.runtime.monitor import Monitor
from edgeinfer.runtime.stream import Stream


@dataclass(frozen=True)
class DetectionResult:
    """One processed frame: its detections in the frame's pixels."""

    frame_id: int  # position in the source, counting dropped frames
    timestamp: float  # wall-clock time (time.time()) when the frame was captured
    detections: list[Detection]
    latency_ms: float  # capture -> boxes ready (waiting + detector)
    infer_ms: float  # the detector alone (colour conversion included)
    fps: float
    dropped: int
    #: the BGR frame as captured (not a copy), for overlays
    frame: np.ndarray | None = field(default=None, repr=False, compare=False)


class DetectionStream(Stream):
    """``Stream`` over a detector; iterate it for :class:`DetectionResult`s."""

    def __init__(self, detector: DetectorLike, source: str | int, *,
                 latest: bool | None = None, realtime: bool = False,
                 max_frames: int | None = None) -> None:
        super().__init__(detector, source, latest=latest,  # type: ignore[arg-type]
                         realtime=realtime, max_frames=max_frames)
        self._detector = detector
        self._to_rgb = detector.spec.frame_color == "RGB"

    @property
    def monitor(self) -> Monitor | None:
        """No field monitor for detectors yet."""
        return None

    def _predict(self, frame_id: int, ts: float, t_cap: float,  # type: ignore[override]
                 frame: np.ndarray) -> DetectionResult:
        t = time.perf_counter()
        x = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if self._to_rgb and frame.ndim == 3 \
            else frame
        dets = self._detector(x)
        now = time.perf_counter()
        self._processed += 1
        latency = (now - t_cap) * 1e3
        self._latencies.append(latency)
        return DetectionResult(frame_id, ts, dets, latency, (now - t) * 1e3,
                               self._processed / (now - self._start), self._dropped, frame)
