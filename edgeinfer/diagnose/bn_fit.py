"""Label-free evidence about preprocessing: how well frames fit a model's BatchNorm statistics.

Every BatchNorm layer stores the running mean and variance of the activations it saw in
training. Feed the model frames prepared the way it was trained and the per-channel batch
mean/variance at the input of each BN layer land near those running values; prepare them
wrongly (no /255, another mean/std, swapped channels) and they move away. The fit is
scored per layer as

* ``mean_abs_z``: mean over channels of ``|batch_mean - running_mean| / sqrt(running_var)``,
* ``log_var_ratio``: mean over channels of ``|log(batch_var / running_var)|``,

and summarised over the first ``max_layers`` BN layers (the ones nearest the input, which
depend most on preprocessing and least on image content) by the MEDIAN of the per-layer
sums: one odd layer (a channel that is almost dead in training, a layer that reacts to
content) cannot dominate. Lower is better; the absolute value depends on the model, so the
audit only ever compares fits of one model on one set of frames.

Frameworks are imported lazily and detected by duck typing: a ``torch.nn.Module`` is
probed with forward pre-hooks on ``nn.BatchNorm2d`` (one forward pass gives both the
model output and the statistics), a Keras model through a sub-model whose outputs are the
inputs of its ``BatchNormalization`` layers, an ONNX ``ModelProto`` with unfolded
``BatchNormalization`` nodes through a copy whose extra outputs are their inputs. Anything
else has no probe (``available`` is False and says why).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_LAYERS = 8
_EPS_FLOOR = 1e-12


@dataclass(frozen=True)
class LayerFit:
    """The fit of one BN layer's input statistics to its running statistics."""

    name: str
    channels: int
    mean_abs_z: float
    log_var_ratio: float

    @property
    def score(self) -> float:
        return self.mean_abs_z + self.log_var_ratio


@dataclass(frozen=True)
class BNFit:
    """Summary over the probed layers: ``score`` is the median of the per-layer scores."""

    score: float
    mean_abs_z: float
    log_var_ratio: float
    layers: tuple[LayerFit, ...] = field(default=())

    def to_dict(self, per_layer: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {"score": self.score, "mean_abs_z": self.mean_abs_z,
                             "log_var_ratio": self.log_var_ratio, "layers": len(self.layers)}
        if per_layer:
            d["per_layer"] = [{"name": lf.name, "channels": lf.channels,
                               "mean_abs_z": lf.mean_abs_z, "log_var_ratio": lf.log_var_ratio}
                              for lf in self.layers]
        return d


class _Moments:
    """Per-channel mean/variance over many batches (Chan et al.'s pairwise combination, in
    float64), so batches of any size give the statistics of the whole set in one pass."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def add(self, x: np.ndarray, channel_axis: int) -> None:
        x = np.moveaxis(np.asarray(x, np.float64), channel_axis, -1)
        x = x.reshape(-1, x.shape[-1])
        self.add_moments(x.mean(0), x.var(0), x.shape[0])

    def add_moments(self, mean: np.ndarray, var: np.ndarray, n: int) -> None:
        mean, m2 = np.asarray(mean, np.float64), np.asarray(var, np.float64) * n
        if self.mean is None:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        tot = self.n + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / tot)
        self.m2 = self.m2 + m2 + delta * delta * (self.n * n / tot)
        self.n = tot

    def mean_var(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean, self.m2 / self.n


def layer_fit(name: str, mean: np.ndarray, var: np.ndarray, run_mean: np.ndarray,
              run_var: np.ndarray, eps: float) -> LayerFit:
    """Compare batch moments with running moments (non-finite values count as a huge misfit)."""
    rv = np.asarray(run_var, np.float64) + eps
    z = np.abs(mean - np.asarray(run_mean, np.float64)) / np.sqrt(rv)
    lvr = np.abs(np.log((var + eps + _EPS_FLOOR) / rv))
    z = np.where(np.isfinite(z), z, 1e6)
    lvr = np.where(np.isfinite(lvr), lvr, 1e6)
    return LayerFit(name, int(len(rv)), float(z.mean()), float(lvr.mean()))


def summarise(layers: Sequence[LayerFit]) -> BNFit | None:
    if not layers:
        return None
    return BNFit(float(np.median([lf.score for lf in layers])),
                 float(np.median([lf.mean_abs_z for lf in layers])),
                 float(np.median([lf.log_var_ratio for lf in layers])), tuple(layers))


class BNProbe:
    """Captures the input statistics of a model's first BatchNorm layers during a forward.

    ``evaluate(batches, forward)`` runs ``forward`` on each input batch and returns the
    concatenated outputs and the :class:`BNFit` (None when the model has no probe).
    """

    def __init__(self, model: Any, max_layers: int = DEFAULT_LAYERS) -> None:
        self.model = model
        self.max_layers = max_layers
        self.kind = "none"
        self.reason = ""
        self._torch_layers: list[tuple[str, Any]] = []
        self._keras: Any = None
        self._keras_layers: list[Any] = []
        if model is None:
            self.reason = "no framework model: BN statistics not probed"
        elif _is_onnx(model):
            self._init_onnx()
        elif _is_torch(model):
            self._init_torch()
        elif _is_keras(model):
            self._init_keras()
        else:
            self.reason = f"no BatchNorm probe for a {type(model).__name__}"

    @property
    def available(self) -> bool:
        return self.kind != "none"

    # ------------------------------------------------------------------ torch
    def _init_torch(self) -> None:
        from torch import nn

        self._torch_layers = [(n, m) for n, m in self.model.named_modules()
                              if isinstance(m, nn.BatchNorm2d) and m.running_mean is not None]
        if self._torch_layers:
            self.kind = "torch"
        else:
            self.reason = "the model has no BatchNorm2d layer with running statistics"

    def _evaluate_torch(self, batches: Sequence[np.ndarray],
                        forward: Callable[[np.ndarray], np.ndarray]
                        ) -> tuple[np.ndarray, BNFit | None]:
        # Hooks fire in execution order, which can differ from registration order; keep the
        # first max_layers layers *as executed*.
        order: list[str] = []
        moments: dict[str, _Moments] = {}
        mods = dict(self._torch_layers)

        def hook(name: str) -> Callable:
            def pre(_mod: Any, args: tuple) -> None:
                if name not in moments:
                    if len(order) >= self.max_layers:
                        return
                    order.append(name)
                    moments[name] = _Moments()
                x = args[0].detach()  # moments in torch, per batch: no activation copies
                mean, var = _torch_moments(x)
                moments[name].add_moments(mean.cpu().numpy(), var.cpu().numpy(),
                                          x.numel() // x.shape[1])
            return pre

        handles = [m.register_forward_pre_hook(hook(n)) for n, m in self._torch_layers]
        try:
            outs = [forward(b) for b in batches]
        finally:
            for h in handles:
                h.remove()
        fits = []
        for name in order:
            m = mods[name]
            mean, var = moments[name].mean_var()
            fits.append(layer_fit(name, mean, var, m.running_mean.double().cpu().numpy(),
                                  m.running_var.double().cpu().numpy(), float(m.eps)))
        return np.concatenate(outs), summarise(fits)

    # ------------------------------------------------------------------ keras
    def _init_keras(self) -> None:
        import keras

        bns = [la for la in _keras_layers(self.model)
               if isinstance(la, keras.layers.BatchNormalization)][: self.max_layers]
        if not bns:
            self.reason = "the model has no BatchNormalization layer"
            return
        try:
            self._keras = keras.Model(self.model.inputs, [la.input for la in bns]
                                      + list(_as_list(self.model.outputs)))
        except Exception as e:  # noqa: BLE001 - nested/subclassed models have no symbolic graph
            self.reason = f"cannot probe this Keras model's BN inputs ({type(e).__name__})"
            return
        self._keras_layers = bns
        self.kind = "keras"

    def _evaluate_keras(self, batches: Sequence[np.ndarray]) -> tuple[np.ndarray, BNFit | None]:
        moments = [_Moments() for _ in self._keras_layers]
        outs = []
        for b in batches:
            res = self._keras(b, training=False)
            res = [np.asarray(r) for r in _as_list(res)]
            for mo, la, r in zip(moments, self._keras_layers, res, strict=False):
                mo.add(r, la.axis if isinstance(la.axis, int) else la.axis[0])
            outs.append(res[len(self._keras_layers)])
        fits = []
        for mo, la in zip(moments, self._keras_layers, strict=True):
            mean, var = mo.mean_var()
            fits.append(layer_fit(la.name, mean, var, np.asarray(la.moving_mean),
                                  np.asarray(la.moving_variance), float(la.epsilon)))
        return np.concatenate(outs), summarise(fits)

    # ------------------------------------------------------------------ onnx
    def _init_onnx(self) -> None:
        """BatchNormalization nodes with constant statistics: their inputs become extra
        graph outputs of a copy of the model (third-party files often keep BN unfolded)."""
        import onnx
        import onnxruntime as ort

        inits = {t.name: t for t in self.model.graph.initializer}
        bns = [n for n in self.model.graph.node if n.op_type == "BatchNormalization"
               and all(i in inits for i in n.input[1:5])][: self.max_layers]
        if not bns:
            self.reason = "the ONNX graph has no BatchNormalization node with constant statistics"
            return
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        for n in bns:
            m.graph.output.append(onnx.helper.make_tensor_value_info(
                n.input[0], onnx.TensorProto.FLOAT, None))
        self._onnx = ort.InferenceSession(m.SerializeToString(),
                                          providers=["CPUExecutionProvider"])
        self._onnx_input = self._onnx.get_inputs()[0].name
        self._onnx_bns = [(n.name or n.input[0], [onnx.numpy_helper.to_array(inits[i])
                                                  for i in n.input[3:5]],
                           next((a.f for a in n.attribute if a.name == "epsilon"), 1e-5))
                          for n in bns]
        self.kind = "onnx"

    def _evaluate_onnx(self, batches: Sequence[np.ndarray]) -> tuple[np.ndarray, BNFit | None]:
        moments = [_Moments() for _ in self._onnx_bns]
        outs = []
        for b in batches:
            res = self._onnx.run(None, {self._onnx_input: b})
            k = len(res) - len(self._onnx_bns)
            outs.append(res[0])
            for mo, x in zip(moments, res[k:], strict=True):
                mo.add(x, 1)
        fits = []
        for mo, (name, (mean_r, var_r), eps) in zip(moments, self._onnx_bns, strict=True):
            mean, var = mo.mean_var()
            fits.append(layer_fit(name, mean, var, mean_r, var_r, float(eps)))
        return np.concatenate(outs), summarise(fits)

    # ------------------------------------------------------------------ API
    def evaluate(self, batches: Sequence[np.ndarray], forward: Callable[[np.ndarray], np.ndarray]
                 ) -> tuple[np.ndarray, BNFit | None]:
        """Model outputs for every batch (concatenated) and the BN fit over all of them."""
        if self.kind == "torch":
            return self._evaluate_torch(batches, forward)
        if self.kind == "keras":
            return self._evaluate_keras(batches)
        if self.kind == "onnx":
            return self._evaluate_onnx(batches)
        return np.concatenate([forward(b) for b in batches]), None


def _torch_moments(x: Any) -> tuple[Any, Any]:
    """Per-channel mean and biased variance of a torch activation (channels on dim 1).

    Read off torch's fused training BatchNorm (momentum 1 copies the batch moments into
    the buffers): one kernel, ~0.7 ms for 64x32x28x28 on one core, where
    ``torch.var_mean`` over dims (0, 2, 3) took 33-38 ms (a strided Welford reduction:
    14% of a whole doctor run on EfficientNet-Lite0) and two passes of sums 4-5 ms."""
    import torch
    import torch.nn.functional as F

    c, n = x.shape[1], x.numel() // x.shape[1]
    if n < 2:  # training BatchNorm refuses one value per channel
        dims = [d for d in range(x.ndim) if d != 1]
        return x.mean(dims), torch.zeros(c, dtype=x.dtype)
    mean, var = torch.zeros(c, dtype=x.dtype), torch.ones(c, dtype=x.dtype)
    F.batch_norm(x, mean, var, None, None, True, 1.0, 1e-5)
    return mean, var * ((n - 1) / n)  # the buffer holds the unbiased variance


def _is_onnx(model: Any) -> bool:
    onnx = sys.modules.get("onnx")
    return onnx is not None and isinstance(model, onnx.ModelProto)


def _is_torch(model: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def _is_keras(model: Any) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(model, keras.Model)


def _keras_layers(model: Any) -> list[Any]:
    """All layers, nested models flattened, in definition order."""
    out = []
    for la in getattr(model, "layers", []):
        out.extend(_keras_layers(la) if hasattr(la, "layers") else [la])
    return out


def _as_list(x: Any) -> list[Any]:
    return list(x) if isinstance(x, (list, tuple)) else [x]
