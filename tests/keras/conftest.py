"""Keras fixtures: the committed, really trained Fashion-MNIST Keras model and real frames.

The model (models/fashion_keras, tools/train_fashion_keras.py) has Rescaling, Conv->BN,
SeparableConv->BN, DepthwiseConv->BN and Dropout. Tests use subsets of the 10k test
frames; the full 10k run is tools/keras_report.py (its numbers are in docs/keras.md).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from edgeinfer.data.frames import FrameSet, load_frames  # noqa: E402
from edgeinfer.spec import PreprocessSpec  # noqa: E402

MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "fashion_keras"
KERAS_FILE = MODEL_DIR / "model.keras"
H5_FILE = MODEL_DIR / "model.h5"
SPEC_FILE = MODEL_DIR / "spec.json"
LABELS_FILE = MODEL_DIR / "labels.txt"


@pytest.fixture(scope="session")
def keras_spec() -> PreprocessSpec:
    return PreprocessSpec.from_json(SPEC_FILE.read_text())


@pytest.fixture(scope="session")
def keras_model():
    import keras

    return keras.saving.load_model(KERAS_FILE, compile=False)


@pytest.fixture(scope="session")
def test_frames(keras_spec) -> FrameSet:
    """400 real Fashion-MNIST test frames spread over the split, BGR uint8 28x28."""
    return load_frames("builtin:fashion-test", keras_spec, limit=400)


def small_model(kind: str = "plain"):
    """A tiny functional model whose BN statistics are set (non-default), as if trained."""
    import keras
    from keras import layers

    inp = keras.Input((28, 28, 1), name="pixels")
    x = inp
    if kind == "rescale":
        x = layers.Rescaling(1 / 255, name="rescale")(x)
    x = layers.Conv2D(4, 3, use_bias=False, name="conv")(x)
    x = layers.BatchNormalization(name="bn", momentum=0.5)(x)
    x = layers.ReLU(name="relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    x = layers.Dense(3, name="logits")(x)
    model = keras.Model(inp, x, name=f"small_{kind}")
    bn = model.get_layer("bn")
    rng = np.random.default_rng(1)
    bn.moving_mean.assign(rng.normal(size=4).astype("float32"))
    bn.moving_variance.assign(rng.uniform(0.5, 2.0, size=4).astype("float32"))
    return model
