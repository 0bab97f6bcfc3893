"""The Keras model as its user runs it: reference preprocessing, then ``model(x, training=False)``.

``model(x, training=False)`` is what ``model.predict`` computes (Dropout off, BatchNorm on
its moving statistics, ``training=True`` flags inside a functional graph overridden), but
without predict's batching and callbacks, so the numbers are exactly the framework's.
TensorFlow is imported only when a runner is built (the runtime never imports it).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeinfer.parity.runners import ReferencePreprocessed
from edgeinfer.spec import PreprocessSpec


class KerasRunner(ReferencePreprocessed):
    """A ``keras.Model`` (or any callable taking ``training=``) in inference mode."""

    def __init__(self, model: Any, spec: PreprocessSpec, apply_softmax: bool,
                 name: str = "source (keras inference)") -> None:
        super().__init__(spec, apply_softmax)
        self.keras_model = model
        self.name = name

    def model(self, x: np.ndarray) -> np.ndarray:
        out = self.keras_model(x, training=False)
        if isinstance(out, dict):  # a SavedModel signature wrapped in TFSMLayer
            out = next(iter(out.values()))
        return np.asarray(out, dtype=np.float64)
