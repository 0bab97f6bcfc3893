"""Running culprit variants through a framework model: predictions, BN fit, training modes.

The source's runner supplies the model call on prepared inputs; the framework model
supplies BN statistics (:mod:`edgeinfer.diagnose.bn_fit`) and the training-mode runs, which
never change the model's state (hooks on the model, or a copy of it). Variants that feed
the model exactly the input of an earlier one are recognised and not run twice.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeinfer.diagnose.bn_fit import BNFit, BNProbe
from edgeinfer.diagnose.culprits import Variant, prepare
from edgeinfer.probs import as_probabilities
from edgeinfer.spec import PreprocessSpec

SEEDS = 4  # dropout draws averaged for the stochastic training-mode culprits


@dataclass
class Outcome:
    """What one variant produced on the frames."""

    variant: Variant
    probs: np.ndarray | None  # [N, K] float64; None when the model refused the input
    bn_fit: BNFit | None
    seconds: float
    identical: bool = False  # same model input as the reference: indistinguishable
    error: str = ""
    same_as: str = ""  # an earlier variant fed the model exactly the same input
    draws: list[np.ndarray] | None = None  # top-1 of each random draw (training modes)


class Simulator:
    """Runs variants through a framework source (``converter.sources.Source``).

    The source's runner supplies the model call on prepared inputs (``runner.model``); the
    framework model (``source.module``) supplies BN statistics and training-mode runs.
    """

    def __init__(self, source: Any, spec: PreprocessSpec, batch: int = 64,
                 order: Sequence[int] | None = None) -> None:
        self.framework = source.framework
        self.module = source.module
        self.runner = source.make_runner(False)
        # ONNX sources: the graph itself, when it still has BatchNormalization nodes
        self.probe = BNProbe(self.module if self.framework != "onnx" else source.export())
        self.spec = spec
        self.batch = batch
        # the device's processing order (frame indices): training-mode variants at batch
        # B > 1 group frames into device calls in this order (data order when None)
        self.order = None if order is None else np.asarray(order, np.int64)
        self._keras_training = False
        self._seen: dict[str, str] = {}
        self._override: Any = None  # a training-mode copy of the torch module

    @property
    def has_dropout(self) -> bool:
        if self.framework != "torch":
            return True
        from torch import nn

        return any(isinstance(m, nn.modules.dropout._DropoutNd) for m in self.module.modules())

    def run(self, variant: Variant, frames: Sequence[np.ndarray],
            reference: list[np.ndarray] | None = None) -> Outcome:
        """Simulate one variant. Eval-mode variants whose model input equals the
        ``reference`` inputs (or an earlier variant's: "/255 twice" and "mean/std x255
        after /255" are one affine map) are not run again: ``identical`` / ``same_as``."""
        t0 = time.perf_counter()
        inputs = prepare(variant, frames)
        if (reference is not None and variant.mode == "eval"
                and all(a.shape == b.shape and np.array_equal(a, b)
                        for a, b in zip(inputs, reference, strict=True))):
            return Outcome(variant, None, None, time.perf_counter() - t0, identical=True)
        if variant.mode == "eval":
            h = hashlib.sha1()
            for x in inputs:
                h.update(str(x.shape).encode())
                h.update(x.tobytes())
            key = h.hexdigest()
            if key in self._seen:
                return Outcome(variant, None, None, time.perf_counter() - t0,
                               same_as=self._seen[key])
            self._seen[key] = f"{variant.culprit} ({variant.detail})"
        try:
            if variant.mode == "eval":
                probs, fit = self._forward(inputs, self.batch)
            elif self.framework == "keras":
                weights = self.module.get_weights()  # training calls update moving stats
                self._keras_training = True
                try:
                    probs, fit, _ = self._in_order(inputs, variant.batch, lambda xs: (
                        *self._forward(xs, variant.batch), []))
                finally:
                    self._keras_training = False
                    self.module.set_weights(weights)
            else:
                probs, fit, draws = self._in_order(inputs, variant.batch, lambda xs: (
                    self._torch_mode_run(variant.mode, xs, variant.batch)))
                return Outcome(variant, probs, fit, time.perf_counter() - t0, draws=draws)
        except Exception as e:  # noqa: BLE001 - a variant the model cannot take (shapes)
            msg = " ".join(str(e).split())[:160]
            return Outcome(variant, None, None, time.perf_counter() - t0,
                           error=f"{type(e).__name__}: {msg}")
        return Outcome(variant, probs, fit, time.perf_counter() - t0)

    def _forward(self, inputs: list[np.ndarray], batch: int) -> tuple[np.ndarray, BNFit | None]:
        groups: dict[tuple, list[int]] = {}
        for i, x in enumerate(inputs):
            groups.setdefault(x.shape, []).append(i)
        order, batches = [], []
        for idx in groups.values():
            for s in range(0, len(idx), batch):
                chunk = idx[s:s + batch]
                order += chunk
                batches.append(np.concatenate([inputs[i] for i in chunk]))
        probe = self.probe if not self._keras_training else BNProbe(None)
        out, fit = probe.evaluate(batches, self._model)
        probs = np.empty_like(out, dtype=np.float64)
        probs[order] = as_probabilities(np.asarray(out, np.float64))
        return probs, fit

    def _in_order(self, inputs: list[np.ndarray], batch: int, fn: Any
                  ) -> tuple[np.ndarray, BNFit | None, list[np.ndarray]]:
        """``fn`` on the inputs in the device's order (batch statistics depend on which
        frames share a call), its per-frame outputs put back in frame order."""
        if batch == 1 or self.order is None:
            return fn(inputs)
        perm = self.order
        probs, fit, draws = fn([inputs[i] for i in perm])
        back = np.empty_like(probs)
        back[perm] = probs
        undo = []
        for d in draws:
            u = np.empty_like(d)
            u[perm] = d
            undo.append(u)
        return back, fit, undo

    def _torch_mode_run(self, mode: str, inputs: list[np.ndarray], batch: int = 1
                        ) -> tuple[np.ndarray, BNFit | None, list[np.ndarray]]:
        """Training-mode culprits, averaged over SEEDS dropout draws (the device made one
        draw; the average is the prediction it most likely made). ``train_mode`` runs a
        COPY of the module in training mode, so functional dropout and drop-connect that
        no nn.Dropout exposes are on too; BatchNorm layers are then replaced by the
        batch-statistics normalisation of :func:`_torch_mode` over calls of ``batch``
        frames (batch 1: each frame by its own statistics, computed 64 frames at a time)."""
        import torch

        model = self.module
        if mode == "train_mode":
            model = copy.deepcopy(self.module).train()
            for m in model.modules():  # the hook normalises; torch's own BN would refuse
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):  # a 1-frame call
                    m.eval()
        chunk = self.batch if batch == 1 else batch
        total, fit, draws = None, None, []
        for seed in range(SEEDS):
            with _torch_mode(model, "batchnorm_batch_stats" if mode == "train_mode" else mode,
                             seed, per_frame=batch == 1):
                if model is self.module:
                    probs, fit = self._forward(inputs, chunk)
                else:
                    self._override = model
                    try:
                        probs, fit = self._forward(inputs, chunk)
                    finally:
                        self._override = None
            total = probs if total is None else total + probs
            draws.append(probs.argmax(-1))
            if mode == "batchnorm_batch_stats" and not any(
                    isinstance(m, torch.nn.modules.dropout._DropoutNd) for m in model.modules()
                    if m.training):
                return probs, fit, draws  # deterministic: one run is enough
        return total / SEEDS, fit, draws

    def _model(self, x: np.ndarray) -> np.ndarray:
        if self._override is not None:
            import torch

            with torch.inference_mode():
                return self._override(torch.from_numpy(x)).double().numpy()
        if self._keras_training:
            return np.asarray(self.module(x, training=True))
        return np.asarray(self.runner.model(x))


@contextmanager
def _torch_mode(model: Any, mode: str, seed: int = 0, per_frame: bool = True
                ) -> Iterator[None]:
    """Training-mode behaviour WITHOUT touching the model's state: BN layers normalise with
    the batch's own statistics (as an export in training mode does, batch 1 included) and
    dropout draws masks from a fixed seed; running statistics are never updated.
    ``per_frame``: each frame of a call by its own statistics (a device at batch 1), else
    the whole call's (the caller sizes the calls as the device did)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def bn_batch(m: Any, args: tuple, _out: Any) -> Any:
        # Each frame of the batch is normalised by its own statistics, i.e. batch 1 (what a
        # device predicting single frames computes): spatial moments for BatchNorm2d, and
        # for BatchNorm1d over (N, C) a zero centred value, so the output is BN's bias.
        x = args[0]
        if not per_frame and x.numel() > x.shape[1]:  # (1, C) has no batch statistics
            return F.batch_norm(x, None, None, m.weight, m.bias, True, 0.0, m.eps)
        dims = list(range(2, x.ndim))
        if dims:
            mean = x.mean(dims, keepdim=True)
            var = x.var(dims, unbiased=False, keepdim=True)
        else:
            mean, var = x, torch.zeros_like(x)
        y = (x - mean) / torch.sqrt(var + m.eps)
        if m.affine:
            shape = [1, -1] + [1] * (x.ndim - 2)
            y = y * m.weight.view(shape) + m.bias.view(shape)
        return y

    def drop(m: Any, args: tuple, _out: Any) -> Any:
        return F.dropout(args[0], m.p, training=True)

    handles = []
    for mod in model.modules():
        if mode != "dropout_active" and isinstance(mod, nn.modules.batchnorm._BatchNorm):
            handles.append(mod.register_forward_hook(bn_batch))
        if mode != "batchnorm_batch_stats" and isinstance(mod, nn.modules.dropout._DropoutNd):
            handles.append(mod.register_forward_hook(drop))
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            yield
    finally:
        for h in handles:
            h.remove()
