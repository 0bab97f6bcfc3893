"""Fashion-MNIST frames through the real fashion artifact: the reference (first 1,500 test
frames, labelled) and held-out frames (the next 3,000), shared by the monitor's tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from edgeinfer import Predictor
from edgeinfer.data.datasets import load_fashion_mnist
from edgeinfer.data.frames import to_frame_color
from edgeinfer.runtime.monitor import ReferenceProfile, build_profile


@dataclass
class Fashion:
    predictor: Predictor
    ref_frames: list[np.ndarray]
    ref_labels: np.ndarray
    ref_probs: np.ndarray
    frames: list[np.ndarray]
    labels: np.ndarray
    probs: np.ndarray
    profile: ReferenceProfile

    def run(self, frames: list[np.ndarray]) -> np.ndarray:
        return self.predictor.backend.run(np.stack(frames))


@pytest.fixture(scope="session")
def fashion(fashion_artifact) -> Fashion:
    p = Predictor(fashion_artifact)
    im, y = load_fashion_mnist("test")
    frames = [to_frame_color(f, p.spec.frame_color) for f in im[:4500]]
    ref, held = frames[:1500], frames[1500:]
    ref_probs, ref_moments = p.backend.run_moments(np.stack(ref))
    probs = p.backend.run(np.stack(held))
    prof = build_profile(ref_probs, ref, p.spec.frame_color, y[:1500], features=ref_moments)
    return Fashion(p, ref, y[:1500].astype(int), ref_probs, held, y[1500:4500].astype(int),
                   probs, prof)
