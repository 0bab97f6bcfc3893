"""TFLite export of a Keras model, with the same contract as the torch route.

The file holds the two signatures :class:`edgeinfer.runtime.tflite_backend.TFLiteBackend`
serves (see ``edgeinfer/converter/export/tflite_torch.py`` for the contract): ``frame`` (uint8
``[1, H, W, C]`` at the fixed frame size, the whole spec in the graph) and ``resized``
(float ``[1, h, w, C]`` at the spec's size, after the host-side geometry), both ending in
``probs``. The preprocessing is written in TensorFlow ops under the name scope
``edgeinfer_prefix`` (so the int8 recipe keeps it in float, as for torch), with sizes and
crop offsets computed from the spec for the fixed frame size.

Route: ``keras.export.ExportArchive`` (tracks the model's variables) with one endpoint per
signature -> SavedModel -> ``tf.lite.TFLiteConverter.from_saved_model`` with builtin ops
only (no Flex). Measured: converting concrete functions of a Keras 3 model directly
(``from_concrete_functions``) produced a file WITHOUT weights that returns NaN, silently;
ExportArchive does not. The parity gate would catch it either way.

Quantisation and metadata reuse the torch route's helpers (``quantize_fp16``,
``quantize_int8``: prefix and softmax kept float, min/max calibration, per-channel
weights, bias-overflow fix); the converter embeds the metadata afterwards.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeinfer.artifact import SIG_FRAME, SIG_RESIZED
from edgeinfer.errors import ConversionError
from edgeinfer.progress import Progress
from edgeinfer.spec import PreprocessSpec

PREFIX_SCOPE = "edgeinfer_prefix"


def ends_in_softmax(model: Any, input_shape: tuple[int, ...]) -> bool:
    """Whether the Keras model already outputs probabilities (a softmax last).

    By the last layer when it says so; otherwise (e.g. an opaque SavedModel behind a
    TFSMLayer) by its outputs on a probe: every row non-negative and summing to 1. A
    second softmax on probabilities would flatten them (measured: max |dprob| 0.77).
    """
    last = model.layers[-1] if getattr(model, "layers", None) else None
    if last is not None and (type(last).__name__ == "Softmax" or getattr(
            getattr(last, "activation", None), "__name__", "") == "softmax"):
        return True
    x = np.random.default_rng(0).uniform(-1, 1, (2, *input_shape)).astype(np.float32)
    y = np.asarray(model(x, training=False), np.float64)
    return bool(y.ndim == 2 and (y >= 0).all() and np.allclose(y.sum(-1), 1.0, atol=1e-4))


def _tail(tf: Any, spec: PreprocessSpec, x: Any) -> Any:
    """Colour, normalisation and layout: everything after the geometry (float in, 0..255)."""
    m = spec.color_matrix()
    if m.shape != (1, 1) or m[0, 0] != 1.0:
        x = tf.einsum("bhwc,mc->bhwm", x, tf.constant(m))
    a, b = spec.affine()
    x = x * tf.constant(a) + tf.constant(b)
    if spec.layout == "NCHW":
        x = tf.transpose(x, (0, 3, 1, 2))
    return x


def _geometry(tf: Any, spec: PreprocessSpec, x: Any, hw: tuple[int, int]) -> Any:
    """Resize / crop / letterbox a float [1, h, w, C] frame of the fixed size ``hw``."""
    h, w = hw
    nh, nw = spec.resized_size(h, w)
    if (nh, nw) != (h, w):
        x = tf.image.resize(x, (nh, nw), method="bilinear", antialias=spec.antialias)
    th, tw = spec.size
    if spec.crops:
        top, left = spec.crop_offsets(nh, nw)
        x = x[:, top:top + th, left:left + tw, :]
    elif spec.resize == "letterbox":
        top, left = (th - nh) // 2, (tw - nw) // 2
        x = tf.pad(x, [[0, 0], [top, th - nh - top], [left, tw - nw - left], [0, 0]],
                   constant_values=float(spec.pad_value))
    return x


def convert_float(model: Any, spec: PreprocessSpec, frame_hw: tuple[int, int],
                  progress: Progress | None = None) -> bytes:
    """The fp32 .tflite with both signatures (no edgeinfer metadata)."""
    import keras
    import tensorflow as tf

    say = progress or (lambda _m: None)
    if spec.interpolation != "linear":
        raise ConversionError(f"the Keras TFLite route resizes bilinearly only (TF's bicubic "
                              f"kernel differs from OpenCV's); the spec asks for "
                              f"{spec.interpolation!r}: convert to ONNX instead")
    h, w = (int(v) for v in frame_hw)
    if min(h, w) < 1:
        raise ConversionError(f"frame size {frame_hw} must be positive (height, width)")
    c = spec.frame_channels
    th, tw = spec.size
    softmax = not ends_in_softmax(model, spec.model_input_shape()[1:])

    def head(x: Any) -> dict[str, Any]:
        y = model(x, training=False)
        return {"probs": tf.nn.softmax(y, axis=-1) if softmax else tf.identity(y)}

    def frame_fn(frame: Any) -> dict[str, Any]:
        with tf.name_scope(PREFIX_SCOPE):
            x = _tail(tf, spec, _geometry(tf, spec, tf.cast(frame, tf.float32), (h, w)))
        return head(x)

    def resized_fn(resized: Any) -> dict[str, Any]:
        with tf.name_scope(PREFIX_SCOPE):
            x = _tail(tf, spec, resized)
        return head(x)

    say(f"converting to TFLite with tf.lite {tf.__version__} via keras ExportArchive "
        f"(frame {h}x{w}, batch 1; signatures '{SIG_FRAME}' and '{SIG_RESIZED}')")
    try:
        arch = keras.export.ExportArchive()
        arch.track(model)
        arch.add_endpoint(SIG_FRAME, frame_fn, input_signature=[
            tf.TensorSpec((1, h, w, c), tf.uint8, name=SIG_FRAME)])
        arch.add_endpoint(SIG_RESIZED, resized_fn, input_signature=[
            tf.TensorSpec((1, th, tw, c), tf.float32, name=SIG_RESIZED)])
        with tempfile.TemporaryDirectory(prefix="edgeinfer-keras-") as d:
            arch.write_out(d, verbose=False)
            conv = tf.lite.TFLiteConverter.from_saved_model(
                d, signature_keys=[SIG_FRAME, SIG_RESIZED])
            conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
            return bytes(conv.convert())
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001 - tracing / MLIR / converter errors
        msg = " ".join(str(e).split())[:300] or type(e).__name__
        raise ConversionError(f"TFLite conversion of the Keras model failed (builtin ops "
                              f"only, no Flex): {type(e).__name__}: {msg}") from None


def export_tflite(model: Any, spec: PreprocessSpec, frame_hw: tuple[int, int],
                  quantize: str | None, calibration: Sequence[np.ndarray],
                  progress: Progress | None = None, per_channel: bool = True) -> bytes:
    """One .tflite (no metadata yet): fp32, fp16 weights or full-integer int8."""
    from edgeinfer.converter.int8.tflite_quant import check_quantize, quantize_tflite

    check_quantize(quantize)
    say = progress or (lambda _m: None)
    hw = (int(frame_hw[0]), int(frame_hw[1]))
    return quantize_tflite(convert_float(model, spec, hw, say), spec, hw, quantize,
                           calibration, per_channel, say)
