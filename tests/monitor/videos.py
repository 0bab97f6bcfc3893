"""Real videos for the monitor's tests: Fashion-MNIST test frames written as MJPG, healthy
first and then 4x darker (the shift every monitor surface must notice)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgeinfer.data.datasets import load_fashion_mnist


def dark_half_video(path: Path, first: int, n: int, side: int, dark_from: int,
                    fps: int = 30) -> Path:
    """Frames ``first .. first + n`` of the test split at ``side`` x ``side``; from frame
    ``dark_from`` (counted in the clip) on, 4x darker."""
    im, _ = load_fashion_mnist("test")
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (side, side))
    assert w.isOpened()
    for j in range(n):
        f = im[first + j]
        if side != f.shape[0]:
            f = cv2.resize(f, (side, side), interpolation=cv2.INTER_AREA)
        if j >= dark_from:
            f = (f * 0.25).astype(np.uint8)
        w.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    w.release()
    return path
