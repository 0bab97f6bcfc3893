"""Preprocessing layers inside a Keras model: find them, lift them into the spec, refuse doubles.

Why: Keras users often put ``Rescaling(1/255)`` or ``Normalization`` in the model and then
also divide by 255 in their device code (or in a spec), so the network sees values 255
times too small: one of the most common causes of "accurate in Keras, wrong on the
device". edgeinfer wants ONE canonical preprocessing graph, so:

* a chain of per-channel affine layers (``Rescaling``, ``Normalization``) right after the
  input is **lifted** into the spec: the artifact's spec gets the combined affine map and
  the exported core starts after those layers (a Keras sub-model sharing the weights). The
  artifact then says, in its own metadata, exactly how pixels are scaled;
* a spec that already maps pixels to about [0, 1] in front of a model that scales them
  again is **refused** (:func:`check_double_scaling`) with the fix in one line;
* geometric layers (``Resizing``, ``CenterCrop``) and anything non-affine stay in the model
  and are reported (lifting them would change their resize semantics);
* a ``keras.applications`` model recognised by its name is reported with the
  ``preprocess_input`` convention it was trained with, and a spec that disagrees warns.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edgeinfer.errors import ConversionError
from edgeinfer.spec import PreprocessSpec

AFFINE = ("Rescaling", "Normalization")
GEOMETRIC = ("Resizing", "CenterCrop", "RandomCrop", "RandomFlip", "RandomRotation",
             "RandomZoom", "RandomTranslation", "RandomContrast", "RandomBrightness")
# The pixel range a network sees after every scaling, below which it is double scaling:
# 0..255 through two 1/255 maps gives a width of 0.0039; a sane input has width >= ~1.
DOUBLE_SCALING_WIDTH = 0.05

# keras.applications name prefix -> (convention, expected spec affine in 0..255 pixel units:
# scale, mean, std, colour). From keras/src/applications/imagenet_utils.py modes.
_TF = ("tf: x / 127.5 - 1", 1 / 255, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "RGB")
_CAFFE = ("caffe: BGR, minus the ImageNet mean in 0..255", 1.0, (103.939, 116.779, 123.68),
          (1.0, 1.0, 1.0), "BGR")
_TORCH = ("torch: x / 255, ImageNet mean/std", 1 / 255, (0.485, 0.456, 0.406),
          (0.229, 0.224, 0.225), "RGB")
APPLICATIONS = {
    "mobilenetv2": _TF, "mobilenet_": _TF, "inception_v3": _TF, "inception_resnet_v2": _TF,
    "xception": _TF, "nasnet": _TF, "resnet50v2": _TF, "resnet101v2": _TF,
    "resnet152v2": _TF, "resnet50": _CAFFE, "resnet101": _CAFFE, "resnet152": _CAFFE,
    "vgg16": _CAFFE, "vgg19": _CAFFE, "densenet": _TORCH,
}


@dataclass
class PreprocessReport:
    """What was found; ``lifted`` layers are in the artifact's spec, not in the core."""

    lifted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    application: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"lifted_into_spec": self.lifted, "kept_in_model": self.kept,
                "keras_application": self.application}


def layer_affine(layer: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(r, o) with ``layer(y) == y * r + o`` per channel, or None if it is not affine."""
    kind = type(layer).__name__
    if kind == "Rescaling":
        r = np.asarray(layer.scale, np.float64).reshape(-1)
        o = np.asarray(layer.offset, np.float64).reshape(-1)
        return r, o
    if kind == "Normalization":
        if getattr(layer, "invert", False) or tuple(getattr(layer, "axis", (-1,))) != (-1,):
            return None
        mean = np.asarray(layer.mean, np.float64).reshape(-1)
        var = np.asarray(layer.variance, np.float64).reshape(-1)
        import keras

        r = 1.0 / np.maximum(np.sqrt(var), keras.backend.epsilon())
        return r, -mean * r
    return None


def leading_layers(model: Any) -> list[Any]:
    """The chain of layers right after the (single) input, each feeding only the next one."""
    chain: list[Any] = []
    try:
        layers = [lay for lay in model.layers if type(lay).__name__ != "InputLayer"]
    except AttributeError:
        return chain
    if not getattr(model, "_is_graph_network", hasattr(model, "inputs")) or not layers:
        return chain
    for layer in layers:  # Keras lists functional layers in topological order
        nodes = getattr(layer, "_inbound_nodes", [])
        if len(nodes) != 1:
            break
        chain.append(layer)
        if len(getattr(layer, "_outbound_nodes", [])) != 1:
            break
    return chain


def _affine_of_spec(spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    a, b = spec.affine()
    return a.astype(np.float64), b.astype(np.float64)


def check_double_scaling(spec: PreprocessSpec, layer_name: str, r: np.ndarray,
                         o: np.ndarray) -> None:
    """Refuse a spec that scales pixels to ~[0, 1] before a layer that scales them again."""
    a, _ = _affine_of_spec(spec)
    width = 255.0 * np.abs(a).max() * np.abs(r).max()
    if width < DOUBLE_SCALING_WIDTH and np.abs(a).max() < 0.1:
        raise ConversionError(
            f"double scaling: the spec already maps pixels 0..255 to a range of width "
            f"{255 * np.abs(a).max():.3g} (scale {spec.scale:.6g}, std "
            f"{list(spec.std)}) and the model's layer '{layer_name}' multiplies by "
            f"{np.abs(r).max():.6g} again, so the network would see a range of width "
            f"{width:.3g}; set the spec's scale to 1, mean to 0 and std to 1 (the model's "
            f"own '{layer_name}' does the scaling) or remove the layer from the model")


def combine(spec: PreprocessSpec, r: np.ndarray, o: np.ndarray) -> PreprocessSpec:
    """The spec whose affine map is ``layer(spec(x))`` (same scale, new mean and std).

    ``y = (x*scale - mean)/std`` then ``z = y*r + o`` equals ``(x*scale - mean')/std'`` with
    ``std' = std/r`` and ``mean' = mean - o*std/r``; r must be positive.
    """
    n = spec.model_channels
    if r.size not in (1, n) or o.size not in (1, n):
        raise ValueError("per-channel sizes do not match the model's channels")
    mean = np.broadcast_to(np.asarray(spec.mean, np.float64), (n,))
    std = np.broadcast_to(np.asarray(spec.std, np.float64), (n,))
    r = np.broadcast_to(r, (n,))
    o = np.broadcast_to(o, (n,))
    new_std = std / r
    new_mean = mean - o * std / r

    def compact(v: np.ndarray) -> tuple[float, ...]:
        return (float(v[0]),) if np.allclose(v, v[0], rtol=0, atol=0) else tuple(map(float, v))

    return replace(spec, mean=compact(new_mean), std=compact(new_std))


def application_convention(model: Any) -> tuple[str, tuple] | None:
    name = str(getattr(model, "name", "")).lower()
    for prefix, conv in APPLICATIONS.items():
        if name.startswith(prefix):
            return prefix, conv
    return None


def analyse(model: Any, spec: PreprocessSpec, lift: bool = True
            ) -> tuple[Any, PreprocessSpec, PreprocessReport]:
    """(core model to export, the artifact's spec, report) for a Keras model.

    Raises :class:`ConversionError` for double scaling. ``lift=False`` keeps every
    layer in the model (the report still names them).
    """
    import keras

    report = PreprocessReport()
    chain = leading_layers(model)
    lifted_spec = spec
    n_lift = 0
    for i, layer in enumerate(chain):
        kind = type(layer).__name__
        if kind in AFFINE:
            ro = layer_affine(layer)
            if ro is None:
                report.kept.append(f"{layer.name} ({kind}, not per-channel affine)")
                break
            if i == n_lift:  # still contiguous with the input: the double-scaling rule
                check_double_scaling(lifted_spec, layer.name, *ro)
            liftable = (lift and i == n_lift and bool(np.all(ro[0] > 0))
                        and ro[0].size in (1, spec.model_channels))
            if liftable:
                lifted_spec = combine(lifted_spec, *ro)
                report.lifted.append(f"{layer.name} ({kind})")
                n_lift += 1
            else:
                report.kept.append(f"{layer.name} ({kind})")
        elif kind in GEOMETRIC:
            report.kept.append(f"{layer.name} ({kind})")
        else:
            break
    # Preprocessing layers deeper in the graph are reported too (kept in the model).
    for layer in getattr(model, "layers", []):
        kind = type(layer).__name__
        if (kind in AFFINE or kind in GEOMETRIC) and layer not in chain:
            report.kept.append(f"{layer.name} ({kind})")
    if report.kept:
        report.warnings.append(
            "preprocessing layers stay inside the model: " + ", ".join(report.kept) +
            "; the spec must not repeat them")
    app = application_convention(model)
    if app is not None:
        prefix, (conv, scale, mean, std, color) = app
        report.application = f"{prefix} ({conv})"
        want = PreprocessSpec(size=spec.size, frame_color=spec.frame_color, model_color=color,
                              scale=scale, mean=mean, std=std, layout=spec.layout)
        a0, b0 = _affine_of_spec(spec)
        a1, b1 = _affine_of_spec(want)
        if (spec.model_color != color or not np.allclose(a0, a1, rtol=1e-3)
                or not np.allclose(b0, b1, atol=1e-2)):
            report.warnings.append(
                f"the model looks like keras.applications '{prefix}', trained with "
                f"preprocess_input ({conv}); the spec differs: expected model_color "
                f"{color}, scale {scale:.6g}, mean {list(mean)}, std {list(std)}")
    if n_lift == 0:
        return model, spec, report
    start = chain[n_lift - 1]
    try:
        core = keras.Model(start.output, model.outputs, name=f"{model.name}_core")
    except Exception as e:  # noqa: BLE001 - graph surgery failed: keep the layers instead
        report.warnings.append(f"could not lift {', '.join(report.lifted)} out of the model "
                               f"({type(e).__name__}); they stay inside it")
        report.kept[:0] = report.lifted
        report.lifted = []
        return model, spec, report
    return core, lifted_spec, report
