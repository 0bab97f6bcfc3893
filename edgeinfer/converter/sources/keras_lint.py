"""Lint a Keras model for what makes device predictions differ from ``model.predict``.

Refused (each names the layer, one line):
* BatchNormalization whose moving statistics were never trained (mean 0 and variance 1
  everywhere): it was built and saved without ever running ``fit``, or its weights never
  loaded; in inference it is a no-op, not the normalisation the rest was trained with;
* stateful layers (``stateful=True`` RNNs): their output depends on earlier calls;
* layers that stay random in inference (a Dropout subclass that forces ``training=True``,
  noise in a custom layer): two ``model(x, training=False)`` calls on the same input
  differ; the first layer whose output differs is named.

Warned (the converter fixes it): layers called with ``training=True`` inside a
functional graph. ``model.predict`` / ``model(x, training=False)`` override that flag, and
so does the exporter (tf2onnx ``from_keras`` traces in inference mode), so the artifact
matches what Keras predicts; but whoever wrote ``training=True`` may have expected batch
statistics, so it is said.

Custom layers (classes outside Keras) are listed in the provenance; if the exporter then
fails, its error names them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeinfer.errors import ConversionError


@dataclass
class KerasLint:
    warnings: list[str] = field(default_factory=list)
    batchnorm_layers: int = 0
    dropout_layers: int = 0
    custom_layers: list[str] = field(default_factory=list)
    training_true: list[str] = field(default_factory=list)


_DROPOUT = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D",
            "GaussianDropout", "AlphaDropout", "GaussianNoise")


def walk(model: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, layer) for every layer, recursing into nested models."""
    for layer in getattr(model, "layers", []):
        path = f"{prefix}{layer.name}"
        yield path, layer
        if getattr(layer, "layers", None):
            yield from walk(layer, prefix=f"{path}/")


def _is_keras_class(layer: Any) -> bool:
    mod = type(layer).__module__ or ""
    return mod.startswith(("keras.", "keras", "tf_keras.", "tensorflow."))


def lint(model: Any) -> KerasLint:
    """Static checks; raises :class:`ConversionError` for what cannot be converted."""
    import keras

    report = KerasLint()
    for path, layer in walk(model):
        kind = type(layer).__name__
        if isinstance(layer, keras.layers.BatchNormalization):
            report.batchnorm_layers += 1
            mean = np.asarray(layer.moving_mean)
            var = np.asarray(layer.moving_variance)
            if mean.size and not mean.any() and np.all(var == 1.0):
                raise ConversionError(
                    f"BatchNormalization layer '{path}' has never-trained moving statistics "
                    "(mean 0 and variance 1 everywhere): in inference it normalises nothing, "
                    "unlike in training; train the model (model.fit updates them) or load its "
                    "trained weights before converting")
        if kind in _DROPOUT or isinstance(layer, keras.layers.Dropout):
            report.dropout_layers += 1
        if getattr(layer, "stateful", False):
            raise ConversionError(
                f"layer '{path}' ({kind}) is stateful: its output depends on earlier calls, "
                "which a per-frame artifact cannot reproduce; rebuild it with stateful=False")
        if not _is_keras_class(layer) and not getattr(layer, "layers", None):
            report.custom_layers.append(f"{path} ({type(layer).__module__}.{kind})")
        for node in getattr(layer, "_inbound_nodes", []):
            args = getattr(node, "arguments", None)
            kwargs = getattr(args, "kwargs", {}) or {}
            if kwargs.get("training") is True:
                report.training_true.append(path)
    if report.training_true:
        report.warnings.append(
            "layer(s) " + ", ".join(f"'{p}'" for p in report.training_true) + " are called "
            "with training=True in the functional graph; Keras's predict() and the exporter "
            "override it, so the artifact runs them in inference mode (as model.predict "
            "does): remove training=True if you meant inference")
    return report


def check_deterministic(model: Any, x: np.ndarray) -> None:
    """Two inference calls on the same input must agree; else name the first random layer."""
    a = np.asarray(model(x, training=False))
    b = np.asarray(model(x, training=False))
    if np.array_equal(a, b):
        return
    diff = float(np.abs(a.astype(np.float64) - b).max())
    culprit = _first_random_layer(model, x)
    where = (f"layer '{culprit}' gives different outputs on the same input"
             if culprit else "the model's outputs differ between two identical calls")
    raise ConversionError(
        f"the model stays random in inference: {where} (max |diff| {diff:.3g} between two "
        "model(x, training=False) calls); a dropout or noise layer that ignores training=False "
        "(e.g. Monte-Carlo dropout) cannot be deployed as a deterministic artifact: "
        "remove it or let it honour training=False")


def _first_random_layer(model: Any, x: np.ndarray) -> str | None:
    """The first layer (graph order) whose output differs between two identical calls."""
    import keras

    layers = [lay for lay in getattr(model, "layers", []) if type(lay).__name__ != "InputLayer"]
    try:
        probe = keras.Model(model.inputs, [lay.output for lay in layers])
        outs1 = probe(x, training=False)
        outs2 = probe(x, training=False)
    except Exception:  # noqa: BLE001 - subclassed models have no graph: guess by type
        for path, layer in walk(model):
            if type(layer).__name__ in _DROPOUT or not _is_keras_class(layer):
                return path
        return None
    for layer, o1, o2 in zip(layers, outs1, outs2, strict=True):
        if not np.array_equal(np.asarray(o1), np.asarray(o2)):
            return layer.name
    return None
