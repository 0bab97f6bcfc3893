"""Text drawn on a frame: the prediction and the field monitor's state, for ``watch``.

A small frame (a 28x28 Fashion-MNIST image) is enlarged first so the text is readable; the
alarm line is red. OpenCV only, like the rest of the runtime.
"""

from __future__ import annotations

import textwrap

import cv2
import numpy as np

from edgeinfer.runtime.monitor import MonitorReport

#: frames narrower than this are enlarged (nearest neighbour) before drawing
MIN_WIDTH = 480
#: the alarm's cause is wrapped to at most this many lines (it covers the frame otherwise)
MAX_CAUSE_LINES = 5


def draw(frame: np.ndarray, label: str, probability: float,
         report: MonitorReport | None = None) -> np.ndarray:
    """A BGR copy of ``frame`` with the top-1 prediction and the monitor's line on it."""
    img = frame if frame.ndim == 3 and frame.shape[2] == 3 else cv2.cvtColor(
        frame.reshape(frame.shape[0], frame.shape[1]), cv2.COLOR_GRAY2BGR)
    h, w = img.shape[:2]
    if w < MIN_WIDTH:
        s = -(-MIN_WIDTH // w)
        img = cv2.resize(img, (w * s, h * s), interpolation=cv2.INTER_NEAREST)
    else:
        img = img.copy()
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
    scale = img.shape[1] / 900
    step = int(34 * scale)
    # a dark band behind the text: readable on any frame
    band = img[:step * len(lines) + 12]
    band[:] = (band * 0.35).astype(np.uint8)
    for i, (text, colour) in enumerate(lines):
        cv2.putText(img, text, (8, (i + 1) * step + 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    colour, max(1, int(1.5 * scale)), cv2.LINE_AA)
    return img
