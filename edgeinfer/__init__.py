"""edgeinfer: deploy image CNNs to edge devices without losing accuracy.

Public API only. Importing this package never imports torch, tensorflow, onnx or the
converter: the converter entry point is loaded on first call.
"""

from __future__ import annotations

from typing import Any

# First of all: OpenCV reads its decoder limits when it is loaded (see cv2_env).
from edgeinfer import cv2_env as _cv2_env  # noqa: F401
from edgeinfer._version import __version__
from edgeinfer.errors import (
    ConfigError,
    ConversionError,
    EdgeInferError,
    ImageDecodeError,
    ImageError,
    ImageFormatError,
    ImageTooLargeError,
    MissingExtraError,
    ModelError,
    ParityError,
    ProviderError,
    SpecAuditError,
    SpecError,
)
from edgeinfer.spec import PreprocessSpec


def convert(*args: Any, **kwargs: Any) -> Any:
    """Convert a model to an edgeinfer artifact; see ``edgeinfer.converter.api.convert``."""
    from edgeinfer.converter.api import convert as _convert

    return _convert(*args, **kwargs)


def spec_from(*args: Any, **kwargs: Any) -> PreprocessSpec:
    """The spec read from a training pipeline; see ``edgeinfer.converter.spec_from``."""
    from edgeinfer.converter.spec_from import spec_from as _spec_from

    return _spec_from(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # Predictor pulls in onnxruntime; load it lazily so `import edgeinfer` stays fast.
    if name in ("Predictor", "Stream"):
        import edgeinfer.runtime as runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'edgeinfer' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "ConversionError",
    "EdgeInferError",
    "ImageDecodeError",
    "ImageError",
    "ImageFormatError",
    "ImageTooLargeError",
    "MissingExtraError",
    "ModelError",
    "ParityError",
    "Predictor",
    "Stream",
    "PreprocessSpec",
    "ProviderError",
    "SpecAuditError",
    "SpecError",
    "__version__",
    "convert",
    "spec_from",
]
