"""Keras / TensorFlow frontend: load, lint, lift preprocessing, export to ONNX in inference mode.

Sources: a Keras 3 ``.keras`` file, a legacy Keras 2 ``.h5`` (HDF5) file, a TensorFlow
SavedModel directory (served through ``keras.layers.TFSMLayer``), or a ``keras.Model``
object handed over as is.

Exporter: ``tf2onnx.convert.from_keras`` (opset 17). Keras 3's own
``model.export(format="onnx")`` wraps the same tf2onnx and gave the same parity, but it
traces the model as saved, so a layer called with ``training=True`` stays in training mode
(BatchNorm on batch statistics; Dropout does not even export); ``from_keras`` traces in
inference mode, which is what ``model.predict`` runs. Measurements: docs/keras.md.

The core handed to assembly takes the spec's model input (NHWC float for Keras models, so
the prefix needs no transpose) and starts after any Rescaling/Normalization layers lifted
into the spec (:mod:`edgeinfer.converter.sources.keras_lift`); the parity reference is the
whole model as the user runs it, fed by the user's spec.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgeinfer.converter.sources.base import Source
from edgeinfer.converter.sources.frameworks import require_version, tensorflow_missing
from edgeinfer.errors import ConversionError, ModelError, require
from edgeinfer.progress import Progress
from edgeinfer.spec import PreprocessSpec

OPSET = 17
_MAX_FILE = 4 << 30


def _quiet_tf() -> None:
    """Import TensorFlow, Keras and tf2onnx with their C++ start-up chatter hidden.

    absl/oneDNN print to file descriptor 2 at import whatever TF_CPP_MIN_LOG_LEVEL says,
    and the CLI promises one line per error: the imports run inside ``captured()``.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Keras 3 warns "The structure of `inputs` doesn't match the expected structure" on every
    # call of a one-input functional model with a tensor instead of a one-element list; it
    # flattens both the same way, so the warning is noise the README promises to hide.
    warnings.filterwarnings("ignore", message="The structure of `inputs` doesn't match",
                            category=UserWarning)
    import sys

    if "tf2onnx" in sys.modules:
        return
    from edgeinfer.converter.quiet import captured

    with captured():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
        import tf2onnx  # noqa: F401


def _first_line(e: BaseException, limit: int = 200) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}" if text else type(e).__name__


def _dir_sha256(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(root)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def weights_fingerprint(model: Any) -> str:
    """sha256 over every weight (path, shape, bytes): provenance of an in-memory model."""
    h = hashlib.sha256()
    for w in model.weights:
        h.update(str(getattr(w, "path", w.name)).encode())
        v = np.asarray(w)
        h.update(str(v.shape).encode())
        h.update(np.ascontiguousarray(v).tobytes())
    return h.hexdigest()


def _drop_unknown_kwargs(cls: type) -> type:
    """A subclass accepting Keras-2-era keyword arguments Keras 3 no longer knows.

    ``tf_keras`` saves SeparableConv2D/DepthwiseConv2D configs with ``groups`` and
    ``kernel_*`` keys that Keras 3's constructors reject; dropping them loads the file.
    """
    import inspect

    known = set(inspect.signature(cls.__init__).parameters) | {"name", "dtype", "trainable"}

    class Compat(cls):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{k: v for k, v in kwargs.items()
                                       if k in known or k.startswith("activity_")})

    Compat.__name__ = cls.__name__
    return Compat


def load_model(path: Path) -> tuple[Any, str]:
    """(keras.Model, sha256 of the file or directory); damaged files -> one-line ModelError."""
    _quiet_tf()
    import keras

    from edgeinfer.converter.quiet import captured
    from edgeinfer.data.files import read_regular

    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise ModelError(f"{path} is a directory without saved_model.pb: not a TensorFlow "
                             "SavedModel")
        sha = _dir_sha256(path)
        try:
            with captured():
                layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
        except Exception as e:  # noqa: BLE001 - TF raises many kinds for damaged dirs
            raise ModelError(f"{path} is not a loadable SavedModel ({_first_line(e)})") from None
        return layer, sha
    data = read_regular(path, "Keras model file", ModelError, _MAX_FILE)
    sha = hashlib.sha256(data).hexdigest()
    kind = "Keras 3 .keras" if path.suffix.lower() == ".keras" else "legacy Keras .h5 (HDF5)"
    if path.suffix.lower() == ".keras":
        _check_zip(path, data)
    try:
        with captured():
            try:
                model = keras.saving.load_model(path, compile=False, safe_mode=True)
            except TypeError as e:
                if "keyword argument" not in str(e) or kind.startswith("Keras 3"):
                    raise
                compat = {c.__name__: _drop_unknown_kwargs(c) for c in
                          (keras.layers.SeparableConv2D, keras.layers.DepthwiseConv2D,
                           keras.layers.Conv2D, keras.layers.BatchNormalization)}
                model = keras.saving.load_model(path, compile=False, custom_objects=compat)
    except Exception as e:  # noqa: BLE001 - zip/HDF5/JSON/deserialisation errors
        raise ModelError(f"{path} is not a loadable {kind} model ({_first_line(e)}); is the "
                         "file complete, and are its custom layers importable?") from None
    if not isinstance(model, keras.Model):
        raise ModelError(f"{path} holds a {type(model).__name__}, not a keras.Model")
    return model, sha


def _check_zip(path: Path, data: bytes) -> None:
    """A .keras file is a zip archive; Keras reports a damaged one as 'File not found'."""
    import io
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            bad = z.testzip()
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise ModelError(f"{path} is not a loadable Keras 3 .keras model: the zip archive is "
                         f"damaged or truncated ({_first_line(e)}); is the file complete?"
                         ) from None
    if bad is not None or "config.json" not in names:
        what = f"member {bad} is corrupt" if bad else "it has no config.json"
        raise ModelError(f"{path} is not a loadable Keras 3 .keras model ({what}); is the "
                         "file complete?")


def _wrap_savedmodel(layer: Any, spec: PreprocessSpec) -> Any:
    """A functional model around a TFSMLayer, taking the spec's model input."""
    import keras

    inp = keras.Input(spec.model_input_shape()[1:], name="x")
    out = layer(inp)
    if isinstance(out, dict):
        if len(out) != 1:
            raise ConversionError(f"the SavedModel's serving_default has {len(out)} outputs "
                                  f"({', '.join(out)}); a classifier has one")
        out = next(iter(out.values()))
    return keras.Model(inp, out, name="saved_model")


def check_input(model: Any, spec: PreprocessSpec) -> None:
    """One image input whose shape matches the spec's model input, one output."""
    inputs = getattr(model, "inputs", None)
    outputs = getattr(model, "outputs", None)
    if inputs is None:  # a subclassed model: build it on the spec's input shape
        try:
            model(np.zeros(spec.model_input_shape(1), np.float32), training=False)
        except Exception as e:  # noqa: BLE001
            raise ConversionError(f"the Keras model cannot be called on the spec's model input "
                                  f"{list(spec.model_input_shape())} ({_first_line(e)})") from None
        return
    if len(inputs) != 1 or len(outputs) != 1:
        raise ConversionError(f"the Keras model must have one input and one output, it has "
                              f"{len(inputs)} and {len(outputs)}")
    got = tuple(None if d is None else int(d) for d in inputs[0].shape[1:])
    want = spec.model_input_shape()[1:]
    if len(got) != 3 or any(g is not None and g != w for g, w in zip(got, want, strict=True)):
        hint = (" (Keras models take NHWC: set the spec's layout to NHWC)"
                if spec.layout == "NCHW" and len(got) == 3 and got[-1] == want[0] else "")
        raise ConversionError(f"the Keras model's input has shape [N, {', '.join(map(str, got))}]"
                              f" but the spec produces [N, {', '.join(map(str, want))}] "
                              f"({spec.layout}){hint}; fix the spec's size/layout/model_color")


def export_onnx(model: Any, spec: PreprocessSpec, custom_layers: list[str]) -> Any:
    """tf2onnx ``from_keras`` in inference mode; the input is named ``x``."""
    import tensorflow as tf
    import tf2onnx

    from edgeinfer.converter.quiet import captured

    sig = [tf.TensorSpec((None, *spec.model_input_shape()[1:]), tf.float32, name="x")]
    try:
        with captured():
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=sig, opset=OPSET)
    except Exception as e:  # noqa: BLE001 - tf2onnx raises anything from TF tracing
        raise ConversionError(f"tf2onnx could not export the Keras model{_culprit(e, model)}: "
                              f"{_first_line(e)}"
                              + (f"; custom layers: {', '.join(custom_layers)}"
                                 if custom_layers else "")) from None
    return _rename_output(proto, "keras_output")


def _rename_output(proto: Any, new: str) -> Any:
    """Rename the graph output (tf2onnx names it after the last layer, which may well be
    'probs' or 'frame', the artifact's own names, and then the merge fails)."""
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    proto.graph.output[0].name = new
    return proto


def _culprit(e: BaseException, model: Any) -> str:
    """' (layer NAME)' when the error mentions an op inside a named layer."""
    text = str(e)
    names = [lay.name for lay in getattr(model, "layers", [])]
    for op in re.findall(r"[\w./-]+", text):
        for name in names:
            if f"/{name}/" in f"/{op}/":
                return f" (layer '{name}')"
    return ""


def keras_source(model_or_path: Any, spec: PreprocessSpec, progress: Progress | None = None,
                 lift: bool = True) -> Source:
    """A Keras model (object, .keras, .h5 or SavedModel directory) as a converter source."""
    what = "converting Keras / TensorFlow models"
    if importlib.util.find_spec("tensorflow") is None:
        raise tensorflow_missing(what)
    for mod in ("keras", "tf2onnx"):
        if importlib.util.find_spec(mod) is None:
            require(mod, "keras", what)
    _quiet_tf()
    import keras
    import tensorflow as tf
    import tf2onnx

    require_version("keras", keras.__version__, what)
    require_version("tensorflow", tf.__version__, what)

    from edgeinfer.converter.sources import keras_lift, keras_lint
    from edgeinfer.parity.runners_keras import KerasRunner

    say = progress or (lambda _m: None)
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        loaded, sha = load_model(path)
        origin = {"source": str(path), "model_sha256": sha,
                  "model_format": ("saved_model" if path.is_dir()
                             else path.suffix.lower().lstrip("."))}
        name = f"source (keras {path.name})"
    elif isinstance(model_or_path, keras.Model):
        loaded = model_or_path
        origin = {"source": "keras.Model object",
                  "class": f"{type(loaded).__module__}.{type(loaded).__qualname__}"}
        name = f"source (keras {type(loaded).__name__} object)"
    else:
        raise ConversionError(f"cannot convert a {type(model_or_path).__name__} as a Keras "
                              "model: give a keras.Model, a .keras/.h5 file or a SavedModel "
                              "directory")
    saved_model = isinstance(loaded, keras.layers.TFSMLayer)
    model = _wrap_savedmodel(loaded, spec) if saved_model else loaded
    check_input(model, spec)
    report = keras_lint.lint(model)
    warnings = list(report.warnings)
    if saved_model:
        warnings.append("a SavedModel's layers are opaque: BatchNorm statistics and "
                        "training flags could not be linted (parity still checks the output)")
    probe = np.random.default_rng(0).integers(0, 256, (2, *spec.size, spec.frame_channels),
                                              dtype=np.uint8)
    x = np.concatenate([spec.reference(f) for f in probe])
    keras_lint.check_deterministic(model, x)
    core, art_spec, pre = keras_lift.analyse(model, spec, lift=lift)
    warnings += pre.warnings
    if pre.lifted:
        say(f"lifted {', '.join(pre.lifted)} into the artifact's preprocessing spec")
    if "model_sha256" not in origin:
        origin["weights_sha256"] = weights_fingerprint(model)
    else:
        origin["weights_sha256"] = origin["model_sha256"]
    prov = {"framework": "keras", "framework_version": keras.__version__,
            "tensorflow_version": tf.__version__, **origin,
            "exporter": f"tf2onnx {tf2onnx.__version__} from_keras (opset {OPSET}, "
                        "inference mode)",
            "batchnorm_in_source": report.batchnorm_layers,
            "dropout_in_source": report.dropout_layers,
            "custom_layers": report.custom_layers,
            "training_true_layers": report.training_true,
            "preprocessing_layers": pre.to_dict(),
            "spec_given": spec.to_dict() if art_spec != spec else None}

    def export() -> Any:
        say(f"exporting with tf2onnx from_keras (inference mode), {report.batchnorm_layers} "
            f"BatchNorm, {report.dropout_layers} dropout layers")
        from edgeinfer.converter.passes.fold_conv_affine import FoldConvAffine

        proto = export_onnx(core, art_spec, report.custom_layers)
        n = len(proto.graph.node)
        proto = FoldConvAffine().call(proto).model
        prov["conv_affine_ops_folded"] = n - len(proto.graph.node)
        return proto

    def runner(apply_softmax: bool) -> KerasRunner:
        return KerasRunner(model, spec, apply_softmax, name=name)

    def to_tflite(hw: tuple[int, int], quantize: str | None, calibration: list,
                  progress_: Progress, per_channel: bool) -> bytes:
        from edgeinfer.converter.export.tflite_keras import export_tflite

        return export_tflite(core, art_spec, hw, quantize, calibration, progress_, per_channel)

    # spec: the artifact's spec, i.e. the given one with any lifted layers folded in
    return Source(name, "keras", prov, runner, export, None, warnings, model,
                  to_tflite=to_tflite, spec=art_spec)
