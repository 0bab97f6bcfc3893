"""Shared fixtures: the real sample photos and grey-level comparison helpers."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from edgeinfer import PreprocessSpec
from edgeinfer.converter.preprocess_graph import build_preprocess_model
from edgeinfer.data.datasets import sample_photos


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """BGR uint8 frames, as a deployed camera delivers them."""
    return sample_photos()


def prefix_output(spec: PreprocessSpec, frame: np.ndarray) -> np.ndarray:
    """What the artifact's baked preprocessing prefix computes for one BGR frame."""
    sess = ort.InferenceSession(build_preprocess_model(spec).SerializeToString(),
                                providers=["CPUExecutionProvider"])
    return sess.run(None, {"frame": frame[None]})[0][0]


def grey_levels(spec: PreprocessSpec, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| of two normalised model inputs, back in 0..255 grey levels (per channel)."""
    scale, _ = spec.affine()
    shape = (-1, 1, 1) if spec.layout == "NCHW" else (1, 1, -1)
    return np.abs(a - b) / np.abs(scale).reshape(shape)
