"""Real frames for parity: named data sets or a directory of images, as raw uint8 frames."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edgeinfer import datasets
from edgeinfer.errors import EdgeInferError
from edgeinfer.spec import PreprocessSpec

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
NAMED = ("fashion-test", "fashion-train", "photos")


@dataclass
class FrameSet:
    """Frames in the spec's frame colour order, with ground-truth labels when known."""

    name: str
    frames: list[np.ndarray]
    labels: np.ndarray | None = None
    ids: list[str] | None = None


def to_frame_color(bgr_or_gray: np.ndarray, frame_color: str) -> np.ndarray:
    """Convert an OpenCV BGR (or gray) image to the colour order a spec's frame uses."""
    img = bgr_or_gray
    if img.ndim == 2:
        return img if frame_color == "GRAY" else cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if frame_color == "GRAY":
        return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if frame_color == "RGB" else img


def load_frames(source: str, spec: PreprocessSpec, limit: int | None = None) -> FrameSet:
    """``fashion-test`` | ``photos`` | a directory of images (sorted by name)."""
    if source in ("fashion-test", "fashion-train"):
        split = source.split("-")[1]
        images, labels = datasets.load_fashion_mnist(split)
        if limit:
            # spread over the whole split (the files are not shuffled by class everywhere)
            idx = np.linspace(0, len(images) - 1, min(limit, len(images))).astype(int)
            images, labels = images[idx], labels[idx]
        frames = [to_frame_color(im, spec.frame_color) for im in images]
        return FrameSet(source, frames, labels, [f"{split}[{i}]" for i in range(len(frames))])
    if source == "photos":
        photos = datasets.sample_photos()
        names = sorted(photos)[:limit] if limit else sorted(photos)
        return FrameSet(source, [to_frame_color(photos[n], spec.frame_color) for n in names],
                        None, names)
    path = Path(source)
    if not path.is_dir():
        raise EdgeInferError(f"parity data {source!r} is neither one of {', '.join(NAMED)} "
                             "nor a directory of images")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    frames, ids = [], []
    for f in files:
        img = cv2.imdecode(np.frombuffer(f.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise EdgeInferError(f"parity image {f} cannot be decoded")
        frames.append(to_frame_color(img, spec.frame_color))
        ids.append(f.name)
    if not frames:
        raise EdgeInferError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
    return FrameSet(str(path), frames, None, ids)
