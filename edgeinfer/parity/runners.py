"""Runners: every execution that parity compares, behind one tiny interface.

As in Polygraphy, a runner takes the same input (a list of raw uint8 frames in the spec's
frame colour order) and returns float64 probabilities [N, K], so one comparison works over
any pair: the framework in inference mode fed by the reference preprocessing, the source
ONNX model, and any artifact fed the raw frames. Artifacts run through the runtime's own
:func:`~edgeinfer.runtime.loader.open_backend`, exactly as the Predictor runs them.
Framework imports (torch, tensorflow) happen inside the runners that need them.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edgeinfer.data.files import ModelSource
from edgeinfer.probs import softmax
from edgeinfer.runtime.backend import Backend
from edgeinfer.runtime.loader import open_backend
from edgeinfer.spec import PreprocessSpec

BATCH = 256


def by_size(frames: Sequence[np.ndarray], fn: Callable[[np.ndarray], np.ndarray],
            batch: int = BATCH) -> np.ndarray:
    """Run ``fn`` on stacks of equal-sized frames (<= batch each), results in input order."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, f in enumerate(frames):
        groups[f.shape].append(i)
    out: list[np.ndarray | None] = [None] * len(frames)
    for idx in groups.values():
        for s in range(0, len(idx), batch):
            chunk = idx[s:s + batch]
            res = fn(np.stack([frames[i] for i in chunk]))
            for j, i in enumerate(chunk):
                out[i] = res[j]
    return np.stack(out) if out else np.zeros((0, 0))


class ArtifactRunner:
    """An artifact (ONNX or TFLite, path or bytes) fed raw uint8 frames: what deploys."""

    def __init__(self, model: ModelSource | Backend, name: str = "artifact",
                 threads: int | None = None) -> None:
        self.name = name
        files = (str, bytes, bytearray, memoryview, os.PathLike)
        self.backend: Backend = (open_backend(model, threads) if isinstance(model, files)
                                 else model)

    def run(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        def fn(x: np.ndarray) -> np.ndarray:
            return self.backend.run(x if x.ndim == 4 else x[..., None])

        return by_size(frames, fn).astype(np.float64)


class ReferencePreprocessed:
    """Base for sources: the numpy/OpenCV reference preprocessing, then the model."""

    name = "source"

    def __init__(self, spec: PreprocessSpec, apply_softmax: bool) -> None:
        self.spec = spec
        self.apply_softmax = apply_softmax

    def model(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def preprocess(self, stack: np.ndarray) -> np.ndarray:
        return np.concatenate([self.spec.reference(f) for f in stack])

    def run(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        def fn(stack: np.ndarray) -> np.ndarray:
            y = self.model(self.preprocess(stack)).astype(np.float64)
            return softmax(y) if self.apply_softmax else y

        return by_size(frames, fn)


class TorchRunner(ReferencePreprocessed):
    """The torch module in eval mode, as the user runs it in the framework."""

    def __init__(self, module: Any, spec: PreprocessSpec, apply_softmax: bool,
                 name: str = "torch") -> None:
        super().__init__(spec, apply_softmax)
        self.module = module.eval()
        self.name = name

    def model(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(x)).double().numpy()


class OnnxSourceRunner(ReferencePreprocessed):
    """The source ONNX model as given (BN unfolded), fed by the reference preprocessing."""

    def __init__(self, model: str | bytes, spec: PreprocessSpec, apply_softmax: bool,
                 name: str = "source-onnx") -> None:
        import onnxruntime as ort

        super().__init__(spec, apply_softmax)
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.name = name

    def model(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]
