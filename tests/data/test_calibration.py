"""The offline photo calibration set: real package photos plus seeded augmentations."""

from __future__ import annotations

import numpy as np

from edgeinfer.data.calibration import calibration_frames, package_photos


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


def test_photo_calibration_is_a_builtin_data_set_and_the_photo_default() -> None:
    from edgeinfer.converter.api import _default_calibration
    from edgeinfer.converter.spec_resolve import resolve
    from edgeinfer.data.frames import load_frames

    spec = resolve("efficientnet-lite0", None).spec
    fs = load_frames("builtin:photo-calibration", spec, limit=24)
    assert len(fs.frames) == 24 and len(set(fs.ids)) == 24
    assert all(f.dtype.name == "uint8" and f.ndim == 3 for f in fs.frames)
    # calibrating on the parity photos themselves certifies nothing: default to this set
    assert _default_calibration("builtin:photos") == "builtin:photo-calibration"
    assert _default_calibration("builtin:fashion-test") == "builtin:fashion-train"
