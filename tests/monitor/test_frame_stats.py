"""Frame statistics move the way their words say, on real photos."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeinfer.data.datasets import sample_photos
from edgeinfer.runtime.monitor import FRAME_SIGNALS, frame_stats


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return sample_photos()["chelsea"]


def _s(frame: np.ndarray, color: str = "BGR") -> dict[str, float]:
    return dict(zip(FRAME_SIGNALS, frame_stats(frame, color), strict=True))


def test_each_signal_moves_with_its_shift(photo) -> None:
    base = _s(photo)
    assert _s((photo * 0.5).astype(np.uint8))["brightness"] < base["brightness"] * 0.6
    assert _s(cv2.GaussianBlur(photo, (0, 0), 3))["sharpness"] < base["sharpness"] * 0.6
    rng = np.random.default_rng(0)
    noisy = np.clip(photo + rng.normal(0, 25, photo.shape), 0, 255).astype(np.uint8)
    assert _s(noisy)["noise"] > base["noise"] * 2
    grey = cv2.cvtColor(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert _s(grey)["saturation"] == pytest.approx(0.0, abs=1e-6)
    warm = photo.copy()
    warm[..., 2] = np.clip(warm[..., 2].astype(int) + 60, 0, 255)
    assert _s(warm)["warmth"] > base["warmth"] + 30
    small = cv2.resize(photo, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    assert _s(small)["pixels"] == pytest.approx(base["pixels"] - 2, abs=0.05)


def test_colour_order_is_respected(photo) -> None:
    rgb = photo[..., ::-1].copy()
    assert frame_stats(rgb, "RGB") == pytest.approx(frame_stats(photo, "BGR"), rel=1e-4)
    assert _s(rgb, "BGR")["warmth"] == pytest.approx(-_s(photo)["warmth"], rel=1e-4)


def test_tiny_and_grey_frames() -> None:
    for f in (np.zeros((2, 2), np.uint8), np.full((28, 28, 1), 7, np.uint8)):
        s = frame_stats(f, "GRAY")
        assert np.isfinite(s).all()
