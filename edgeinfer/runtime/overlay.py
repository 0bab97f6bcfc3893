"""Drawn on a frame for ``watch``: the prediction and the field monitor's state, or a
detector's boxes (with their label, score and keypoints).

A small frame (a 28x28 Fashion-MNIST image) is enlarged first so the text is readable (boxes
scale with it); the alarm line is red. OpenCV only, like the rest of the runtime.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edgeinfer.runtime.monitor import MonitorReport

if TYPE_CHECKING:
    from edgeinfer.runtime.detect.detector import Detection

#: frames narrower than this are enlarged (nearest neighbour) before drawing
MIN_WIDTH = 480
#: the alarm's cause is wrapped to at most this many lines (it covers the frame otherwise)
MAX_CAUSE_LINES = 5


def draw(frame: np.ndarray, label: str, probability: float,
         report: MonitorReport | None = None) -> np.ndarray:
    """A BGR copy of ``frame`` with the top-1 prediction and the monitor's line on it."""
    img, _ = _canvas(frame)
    lines = [(f"{label} ({probability:.2f})", (255, 255, 255))]
    if report is not None:
        if report.estimated_accuracy is not None:
            lo, hi = report.interval or (0.0, 0.0)
            est = (f"est. accuracy {report.estimated_accuracy:.0%} [{lo:.0%}, {hi:.0%}] "
                   f"ref {report.reference_accuracy:.0%}")
        else:
            est = "accuracy not estimated"
        lines.append((est, (255, 255, 255)))
        if report.alarm:
            parts = textwrap.wrap("ALARM: " + (report.cause or ""), 48)
            if len(parts) > MAX_CAUSE_LINES:  # say that it goes on (the log line has it all)
                parts = parts[:MAX_CAUSE_LINES]
                parts[-1] = parts[-1][:44].rstrip(" ;,") + " ..."
            lines.extend((part, (0, 0, 255)) for part in parts)
        else:
            lines.append((f"ok, {report.frames} frames", (0, 255, 0)))
    _text(img, lines)
    return img


#: box colour (BGR): green, readable on skin, sky and most scenes
BOX = (0, 255, 0)
KEYPOINT = (0, 200, 255)


def draw_boxes(frame: np.ndarray, detections: Sequence[Detection],
               title: str | None = None) -> np.ndarray:
    """A BGR copy of ``frame`` with each detection's box, ``label score`` and keypoints,
    and a ``title`` line (e.g. how many objects, the latency) on a dark band."""
    img, s = _canvas(frame)
    thick = max(2, round(img.shape[1] / 400))
    fscale = max(0.5, img.shape[1] / 1400)
    for d in detections:
        x0, y0, x1, y1 = (round(v * s) for v in d.box)
        cv2.rectangle(img, (x0, y0), (x1, y1), BOX, thick, cv2.LINE_AA)
        text = f"{d.label} {d.score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, fscale, 1)
        ty = max(y0, th + base + 2)
        cv2.rectangle(img, (x0, ty - th - base - 2), (x0 + tw + 4, ty), BOX, -1)
        cv2.putText(img, text, (x0 + 2, ty - base), cv2.FONT_HERSHEY_SIMPLEX, fscale,
                    (0, 0, 0), 1, cv2.LINE_AA)
        for x, y in d.keypoints:
            cv2.circle(img, (round(x * s), round(y * s)), thick + 1, KEYPOINT, -1,
                       cv2.LINE_AA)
    if title:
        _text(img, [(title, (255, 255, 255))])
    return img


def _canvas(frame: np.ndarray) -> tuple[np.ndarray, int]:
    """A BGR copy to draw on, enlarged by a whole factor when narrower than MIN_WIDTH, and
    that factor."""
    img = frame if frame.ndim == 3 and frame.shape[2] == 3 else cv2.cvtColor(
        frame.reshape(frame.shape[0], frame.shape[1]), cv2.COLOR_GRAY2BGR)
    h, w = img.shape[:2]
    if w < MIN_WIDTH:
        s = -(-MIN_WIDTH // w)
        return cv2.resize(img, (w * s, h * s), interpolation=cv2.INTER_NEAREST), s
    return img.copy(), 1


def _text(img: np.ndarray, lines: list[tuple[str, tuple[int, int, int]]]) -> None:
    scale = img.shape[1] / 900
    step = int(34 * scale)
    # a dark band behind the text: readable on any frame
    band = img[:step * len(lines) + 12]
    band[:] = (band * 0.35).astype(np.uint8)
    for i, (text, colour) in enumerate(lines):
        cv2.putText(img, text, (8, (i + 1) * step + 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    colour, max(1, int(1.5 * scale)), cv2.LINE_AA)
