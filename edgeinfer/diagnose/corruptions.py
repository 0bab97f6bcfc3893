"""Real corruptions with fixed parameters: the shifts of the robustness curves.

The doctor's shift/TTA report and the converter's monitor profile (which stores what each
corruption costs the model, for the monitor's cause line) read the same curves, so the
corruptions live here, below both. albumentations (maintained) does the work; nothing is
rewritten. Each corruption has five severities, mild to severe, and a fixed seed per frame,
so a report is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from edgeinfer.errors import require

SEVERITIES = 5
#: name -> (what the parameter is, 5 values from mild to severe)
CORRUPTIONS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "gaussian_noise": ("noise std / 255", (0.02, 0.05, 0.08, 0.12, 0.18)),
    "blur": ("sigma / shorter side", (0.01, 0.02, 0.03, 0.05, 0.08)),
    "brightness_contrast": ("brightness and contrast change", (-0.1, -0.2, -0.3, -0.4, -0.5)),
    "rotation": ("degrees", (5, 10, 15, 20, 30)),
    "jpeg": ("JPEG quality", (80, 50, 30, 20, 10)),
    "scale_crop": ("zoom, offset", ((1.05, 0.02), (1.1, 0.04), (1.2, 0.06), (1.3, 0.08),
                                    (1.4, 0.10))),
}


def transform(name: str, value: Any, shape: tuple[int, ...]) -> Any:
    """The albumentations transform of ``name`` at ``value`` (p=1, fixed parameters)."""
    require("albumentations", "robustness", "shift/TTA robustness")
    import albumentations as A

    if name == "gaussian_noise":
        return A.GaussNoise(std_range=(value, value), p=1)
    if name == "blur":
        s = max(0.3, value * min(shape[:2]))
        return A.GaussianBlur(blur_limit=0, sigma_limit=(s, s), p=1)
    if name == "brightness_contrast":
        return A.RandomBrightnessContrast(brightness_limit=(value, value),
                                          contrast_limit=(value, value), p=1)
    if name == "rotation":
        return A.Rotate(limit=(value, value), border_mode=cv2.BORDER_CONSTANT, fill=0, p=1)
    if name == "jpeg":
        return A.ImageCompression(quality_range=(value, value), p=1)
    if name == "scale_crop":
        zoom, off = value
        return A.Affine(scale=(zoom, zoom), translate_percent=(off, off), p=1)
    raise ValueError(f"unknown corruption {name!r}")


def corrupt(frames: Sequence[np.ndarray], name: str, value: Any, seed: int = 0
            ) -> list[np.ndarray]:
    import albumentations as A

    out = []
    for i, f in enumerate(frames):
        t = A.Compose([transform(name, value, f.shape)], seed=seed + i)
        out.append(np.ascontiguousarray(t(image=f)["image"]).reshape(f.shape))
    return out


