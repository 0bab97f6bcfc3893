"""The TFLite artifact as a parity runner: the runtime's own LiteRT backend, unchanged.

Parity must measure what deploys, so this runner feeds raw uint8 frames to
:class:`edgeinfer.runtime.tflite_backend.TFLiteBackend`, the class the ``Predictor`` uses:
frames of the artifact's fixed size go into the ``frame`` signature, frames of other sizes
take the backend's host-side geometry step first, exactly as when serving.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edgeinfer.check.runners import by_size
from edgeinfer.runtime.tflite_backend import TFLiteBackend


class TFLiteArtifactRunner:
    """A .tflite artifact (bytes or path) fed raw uint8 frames, run by LiteRT."""

    def __init__(self, model: bytes | str, name: str = "tflite", threads: int | None = None,
                 **backend_kwargs) -> None:
        self.name = name
        self.backend = TFLiteBackend(model, threads=threads, **backend_kwargs)

    def run(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        return by_size(frames, self.backend.run).astype(np.float64)
