"""The offline photo calibration set: real package photos plus seeded augmentations."""

from __future__ import annotations

import numpy as np

from edgeinfer.parity.calibration import calibration_frames, package_photos


def test_photos_then_seeded_augmentations():
    photos = package_photos()
    assert len(photos) >= 8  # scikit-image, scikit-learn, matplotlib; more with Debian's
    frames, ids = calibration_frames(len(photos) + 12, seed=3)
    assert len(frames) == len(ids) == len(photos) + 12
    assert all(f.dtype == np.uint8 and f.ndim == 3 and f.shape[2] == 3 for f in frames)
    assert all(min(f.shape[:2]) == 256 for f in frames)
    assert len({f.shape for f in frames}) < len(frames) / 2  # few shapes: batched calibration
    assert ids[len(photos)].endswith("#aug0")
    again, _ = calibration_frames(len(photos) + 12, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
    other, _ = calibration_frames(len(photos) + 12, seed=4)
    assert not np.array_equal(frames[-1], other[-1])
