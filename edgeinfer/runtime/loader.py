"""Open an artifact: the one place that decides which backend runs a model, by content."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from edgeinfer.artifact import sniff_format
from edgeinfer.data.files import ModelSource, load_model_bytes
from edgeinfer.errors import ConfigError, ModelError
from edgeinfer.runtime.backend import Backend


def open_backend(
    model: ModelSource,
    threads: int | None = None,
    *,
    providers: str | Sequence[str] | None = None,
    allow_fallback: bool = False,
    trt_fp16: bool = False,
    trt_cache_dir: str | os.PathLike | None = None,
    spec: Any = None,
    labels: Sequence[str] | None = None,
    source: str | None = None,
) -> Backend:
    """The one way to load an artifact: the backend is chosen by the file's content.

    TFLite (``TFL3`` identifier) runs in LiteRT, anything else is loaded as ONNX by
    onnxruntime; the converter's gate, the ladder, ``verify`` and the Predictor all come
    through here, so they run an artifact with the same code and thread settings.
    ``spec``/``labels`` serve a third-party .tflite without edgeinfer metadata.
    """
    data, name = load_model_bytes(model)
    name = source or name
    try:
        fmt = sniff_format(data)
    except ModelError as e:
        raise ModelError(f"{name}: {e}") from None
    if fmt == "tflite":
        from edgeinfer.runtime.tflite_backend import TFLiteBackend

        if providers not in (None, "cpu", ["cpu"], ("cpu",)) or trt_fp16 or trt_cache_dir:
            raise ConfigError(f"{name} is a TFLite model: it runs on the CPU with LiteRT "
                              "(XNNPACK); providers= and trt_* options are for ONNX artifacts")
        return TFLiteBackend(data, threads=threads, spec=spec, labels=labels, source=name)
    if spec is not None or labels is not None:
        raise ConfigError("spec= and labels= are for .tflite files without edgeinfer "
                          "metadata; convert other models with `edgeinfer convert`")
    from edgeinfer.runtime.onnx_backend import OnnxBackend

    return OnnxBackend(data, threads=threads, providers=providers,
                       allow_fallback=allow_fallback, trt_fp16=trt_fp16,
                       trt_cache_dir=trt_cache_dir, source=name)
