"""The backend interface: one loaded artifact that turns a batch of frames into probabilities.

A backend is a small runner in the style of Polygraphy's: it owns a loaded model and
nothing else. The :class:`~edgeinfer.runtime.predictor.Predictor` does input handling,
TTA and top-k on top of any object with this shape, so a TFLite or TensorRT runner, or a
test double that counts calls, plugs in through ``Predictor.from_backend``.
"""

from __future__ import annotations

import os
from typing import Protocol, runtime_checkable

import numpy as np

#: Default intra-op threads are capped here: a Raspberry Pi 4/5 has 4 cores, and more
#: threads than cores only adds contention on small edge CPUs.
MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """CPUs this process may use (affinity mask, else os.cpu_count()), capped at 4."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(1, min(n, MAX_DEFAULT_THREADS))




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

