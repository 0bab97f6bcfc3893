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
NOISY = 0.5  # below this run-to-run agreement a culprit's predictions count as random
# Draws of a RANDOM training-mode culprit (its draws agree on < NOISY of the frames): its
# score is a ratio of two small agreement rates (EfficientNet-Lite0 at batch 1: ~2%, one or
# two of 57 frames per pair of draws), which 4 draws estimate to about +-50% (the same
# device scored 0.75 and 0.43 with two sets of 4 draws); 8 draws give 28 pairs instead of
# 6 and twice the device comparisons. At batch 1 only: there the draws are one frame per
# call (cheap), while EfficientNet-Lite0 at batch 32-64 is random too and 4 more draws
# of 57-frame calls cost more than the rest of the simulation (measured: 129 s of 701 s).
RANDOM_SEEDS = 8
# Frames per model call where the result does not depend on the call (eval mode, and BN on
# each frame's own statistics): about this many input values per call. Small calls keep a
# model's activations in cache: EfficientNet-Lite0 (150k values a frame) ran 2-4x faster
# per frame one frame at a time than 32 at a time on a loaded 2-core CPU (one torch
# thread), while a 28x28 model still gets 64 frames a call (per-call overhead dominates).
CALL_VALUES = 1 << 16


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
        # torch: the variants run on a channels-last COPY (see _channels_last); else the
        # module itself. The BN probe and the training-mode hooks go on what runs.
        self.net = _channels_last(self.module) if self.framework == "torch" else self.module
        self._net_checked = self.net is self.module
        # ONNX sources: the graph itself, when it still has BatchNormalization nodes
        self.probe = BNProbe(self.net if self.framework != "onnx" else source.export())
        self.spec = spec
        self.batch = batch
        # the device's processing order (frame indices): training-mode variants at batch
        # B > 1 group frames into device calls in this order (data order when None)
        self.order = None if order is None else np.asarray(order, np.int64)
        self._keras_training = False
        self._seen: dict[str, str] = {}
        self._override: Any = None  # a training-mode copy of the torch module
        self._train_copy: Any = None  # made once, reused by every train_mode variant

    def chunk(self, inputs: Sequence[np.ndarray]) -> int:
        """Frames per call for runs whose predictions do not depend on the call."""
        size = max((int(np.prod(x.shape[1:])) for x in inputs), default=1)
        return max(1, min(self.batch, CALL_VALUES // max(size, 1)))

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
        same_input = (variant.mode != "eval" and variant.spec == self.spec
                      and variant.frame_op is None and variant.input_op is None)
        # the mode culprits feed the reference's inputs: prepared once, not per variant
        inputs = reference if same_input and reference is not None else prepare(variant, frames)
        self._check_net(inputs)
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
                probs, fit = self._forward(inputs, self.chunk(inputs))
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
        draw; the average is the prediction it most likely made), RANDOM_SEEDS at batch 1
        when the first SEEDS draws agree on < NOISY of the frames. ``train_mode`` runs a
        COPY of the module in training mode, so functional dropout and drop-connect that
        no nn.Dropout exposes are on too; BatchNorm layers are then replaced by the
        batch-statistics normalisation of :func:`_torch_mode` over calls of ``batch``
        frames (batch 1: each frame by its own statistics, :meth:`chunk` frames a call)."""
        import torch

        model = self.net
        if mode == "train_mode":
            if self._train_copy is None:
                self._train_copy = copy.deepcopy(self.net).train()
                for m in self._train_copy.modules():  # the hooks normalise (torch's own BN
                    if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm,  # refuses a
                                      torch.nn.modules.dropout._DropoutNd)):  # 1-frame call)
                        m.eval()  # and draw the dropout masks, one device call at a time
            model = self._train_copy
        # batch B > 1: several device calls share one model call (the hooks keep each
        # call's statistics and masks apart), as many as the batch-independent chunk holds
        chunk = self.chunk(inputs) if batch == 1 else max(batch,
                                                          self.chunk(inputs) // batch * batch)
        total, fit, draws = None, None, []
        seeds = SEEDS
        seed = 0
        while seed < seeds:
            with _torch_mode(model, mode, seed, per_frame=batch == 1, group=batch):
                if model is self.net:
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
            seed += 1
            if seed == SEEDS and batch == 1 and _self_agreement(draws) < NOISY:
                seeds = RANDOM_SEEDS
        return total / len(draws), fit, draws

    def _model(self, x: np.ndarray) -> np.ndarray:
        if self._override is not None or self.framework == "torch":
            import torch

            model = self._override if self._override is not None else self.net
            t = torch.from_numpy(x)
            if t.ndim == 4 and self.net is not self.module:
                t = t.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                return model(t).double().numpy()
        if self._keras_training:
            return np.asarray(self.module(x, training=True))
        return np.asarray(self.runner.model(x))

    def _check_net(self, inputs: list[np.ndarray]) -> None:
        """The channels-last copy runs one frame before it is trusted: a model that calls
        ``.view`` on a conv output refuses channels-last tensors, and then the module
        itself runs every variant (slower, same predictions)."""
        if self._net_checked or not inputs:
            return
        self._net_checked = True
        try:
            self._model(inputs[0])
        except Exception:  # noqa: BLE001 - any refusal: fall back to the model as given
            self.net = self.module
            self.probe = BNProbe(self.module)


@contextmanager
def _torch_mode(model: Any, mode: str, seed: int = 0, per_frame: bool = True,
                group: int = 1) -> Iterator[None]:
    """Training-mode behaviour WITHOUT touching the model's state: BN layers normalise with
    the batch's own statistics (as an export in training mode does, batch 1 included) and
    dropout draws masks from a fixed seed; running statistics are never updated.
    ``per_frame``: each frame of a call by its own statistics (a device at batch 1), else
    those of each ``group`` consecutive frames of the call: one model call holds several
    device calls of ``group`` frames (the last may hold fewer, as the device's last call
    did). Why not one model call per device call: at batch 2-8 a small model spent its
    time in per-call overhead. Dropout masks are drawn group after group, so a model whose
    only random layer is an nn.Dropout gets exactly the masks of one call per group."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def bn_batch(m: Any, args: tuple, _out: Any) -> Any:
        # Each frame of the batch is normalised by its own statistics, i.e. batch 1 (what a
        # device predicting single frames computes): spatial moments for BatchNorm2d, and
        # for BatchNorm1d over (N, C) a zero centred value, so the output is BN's bias.
        x = args[0]
        if not per_frame:
            parts = [call_bn(m, p) for p in _groups(x, group)]
            return parts[0] if len(parts) == 1 else torch.cat(parts)
        return frame_bn(m, x)

    def call_bn(m: Any, x: Any) -> Any:
        if x.numel() > x.shape[1]:  # (1, C) has no batch statistics
            return F.batch_norm(x, None, None, m.weight, m.bias, True, 0.0, m.eps)
        return frame_bn(m, x)

    def frame_bn(m: Any, x: Any) -> Any:
        dims = list(range(2, x.ndim))
        if dims:  # group norm with one group per channel = each frame's own statistics,
            return F.group_norm(x, x.shape[1], m.weight, m.bias, m.eps)  # one fused kernel
        mean, var = x, torch.zeros_like(x)
        y = (x - mean) / torch.sqrt(var + m.eps)
        if m.affine:
            shape = [1, -1] + [1] * (x.ndim - 2)
            y = y * m.weight.view(shape) + m.bias.view(shape)
        return y

    def drop(m: Any, args: tuple, _out: Any) -> Any:
        if per_frame:
            return F.dropout(args[0], m.p, training=True)
        parts = [F.dropout(p, m.p, training=True) for p in _groups(args[0], group)]
        return parts[0] if len(parts) == 1 else torch.cat(parts)

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


def _groups(x: Any, group: int) -> tuple[Any, ...]:
    """The device calls inside one model call: consecutive slices of ``group`` frames."""
    return (x,) if x.shape[0] <= group else x.split(group)


def _channels_last(module: Any) -> Any:
    """A copy of a torch module with its 4-D weights in channels-last memory, or the module
    itself when it has none. Same predictions (max |diff| 1e-7 on the bundled fashion
    model, 0 on EfficientNet-Lite0), faster on CPU: oneDNN's NHWC convolution and
    pooling ran the fashion model 3.3x and EfficientNet-Lite0 1.3x faster per frame (one
    thread). A copy, because the user's model is never changed."""
    import torch

    if not any(p.ndim == 4 for p in module.parameters()):
        return module
    return copy.deepcopy(module).to(memory_format=torch.channels_last)


def _self_agreement(draws: list[np.ndarray]) -> float:
    """Mean top-1 agreement over all pairs of draws (run-to-run agreement)."""
    pairs = [float((a == b).mean()) for i, a in enumerate(draws) for b in draws[i + 1:]]
    return float(np.mean(pairs)) if pairs else 1.0
