"""The backend interface: one loaded artifact that turns a batch of frames into probabilities.

A backend is a small runner in the style of Polygraphy's: it owns a loaded model and
nothing else. The :class:`~edgeinfer.runtime.predictor.Predictor` does input handling,
TTA and top-k on top of any object with this shape, so a TFLite or TensorRT runner, or a
test double that counts calls, plugs in through ``Predictor.from_backend``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    """What the Predictor needs from a loaded artifact.

    ``run`` must be safe to call from several threads at once.
    """

    @property
    def provider(self) -> str:
        """The execution provider or engine actually running the model."""
        ...

    @property
    def input_shape(self) -> tuple[int | str | None, ...]:
        """Shape of the ``frame`` input, ``(N, H, W, C)``; dynamic dims are names or None."""
        ...

    def run(self, frames: np.ndarray) -> np.ndarray:
        """uint8 ``[N, H, W, C]`` frames -> float32 ``[N, K]`` softmax probabilities."""
        ...

    def metadata_props(self) -> dict[str, str]:
        """The artifact's key -> string metadata (see ``edgeinfer.artifact``)."""
        ...
