"""Runners: every execution that parity compares, behind one tiny interface.

As in Polygraphy, a runner takes the same input (a list of raw uint8 frames in the
spec's frame colour order) and returns probabilities [N, K], so one comparator works
over any pair: the framework in eval mode fed by the reference preprocessing, the
source ONNX model, and any artifact fed the raw frames.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np
import onnxruntime as ort

from edgeinfer.artifact import INPUT_NAME
from edgeinfer.spec import PreprocessSpec

BATCH = 256


class Runner(Protocol):
    name: str

    def run(self, frames: Sequence[np.ndarray]) -> np.ndarray: ...


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


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
    return np.stack(out)


class OrtArtifactRunner:
    """An ONNX artifact fed raw uint8 frames: what deploys, run by onnxruntime."""

    def __init__(self, model: str | bytes, name: str = "onnx", threads: int | None = None,
                 options: ort.SessionOptions | None = None) -> None:
        self.name = name
        so = options or ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        self.session = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])

    def run(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        def fn(x: np.ndarray) -> np.ndarray:
            if x.ndim == 3:
                x = x[..., None]
            return self.session.run(None, {INPUT_NAME: x})[0]

        return by_size(frames, fn)


class _ReferencePreprocessed:
    """Base for sources: the numpy/OpenCV reference preprocessing, then the model."""

    name = "source"

    def __init__(self, spec: PreprocessSpec, apply_softmax: bool) -> None:
        self.spec = spec
        self.apply_softmax = apply_softmax

    def model(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def run(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        def fn(stack: np.ndarray) -> np.ndarray:
            x = np.concatenate([self.spec.reference(f) for f in stack])
            y = self.model(x).astype(np.float64)
            return softmax(y) if self.apply_softmax else y

        return by_size(frames, fn)


class TorchRunner(_ReferencePreprocessed):
    """The torch module in eval mode, as the user runs it in the framework."""

    def __init__(self, module, spec: PreprocessSpec, apply_softmax: bool,
                 name: str = "torch") -> None:
        super().__init__(spec, apply_softmax)
        self.module = module.eval()
        self.name = name

    def model(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.module(torch.from_numpy(x)).double().numpy()


class OnnxSourceRunner(_ReferencePreprocessed):
    """The source ONNX model as given (BN unfolded), fed by the reference preprocessing."""

    def __init__(self, model: str | bytes, spec: PreprocessSpec, apply_softmax: bool,
                 name: str = "source-onnx") -> None:
        super().__init__(spec, apply_softmax)
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.name = name

    def model(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]
