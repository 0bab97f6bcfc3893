"""One small error hierarchy for everything edgeinfer refuses to do.

Every error says what was wrong and, where it can, what to do about it. The CLI maps
any ``EdgeInferError`` to exit code 2 and a single line, so these messages must read
well on their own and must not contain newlines.
"""

from __future__ import annotations


class EdgeInferError(Exception):
    """Base class: anything edgeinfer raises on purpose."""


class SpecError(EdgeInferError, ValueError):
    """A PreprocessSpec (or its JSON form) is invalid."""


class ImageError(EdgeInferError, ValueError):
    """An input image cannot be used: base class for the image errors below."""


class ImageDecodeError(ImageError):
    """Encoded bytes or a file are not a decodable image (corrupt, truncated, not an image)."""


class ImageFormatError(ImageError):
    """A decoded array has the wrong dtype, shape, channel count or contains NaN/inf."""


class ImageTooLargeError(ImageError):
    """An image is above the configured pixel limit (decompression-bomb guard)."""


class ModelError(EdgeInferError):
    """A model or artifact file cannot be loaded or is not what it claims to be."""


class ConversionError(EdgeInferError):
    """The converter refused a model (train mode, missing BN statistics, export failure)."""


class SpecAuditError(ConversionError):
    """The spec audit found that the given spec most likely differs from training."""


class ParityError(EdgeInferError):
    """An artifact does not predict what the source model predicts within tolerance."""


class ProviderError(EdgeInferError):
    """A requested execution provider or backend is not available."""


class ConfigError(EdgeInferError, ValueError):
    """An argument is invalid (unknown TTA policy, top_k < 1, bad thread count, provider)."""


class MissingExtraError(EdgeInferError, ImportError):
    """An optional extra is not installed; the message names the ``pip install`` to run."""


def one_line(msg: object, limit: int | None = 300) -> str:
    """Any message or exception as one line (the CLI prints nothing else), cut at ``limit``."""
    text = " ".join(str(msg).split())
    if not text and isinstance(msg, BaseException):
        text = type(msg).__name__
    if limit is not None and len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def positive_int(name: str, v: object, default: int | None = None) -> int:
    """The one positive-int validator: ``v`` as an int >= 1, else ConfigError naming ``name``.

    ``None`` means ``default`` when one is given (e.g. threads: auto).
    """
    import numbers

    if v is None and default is not None:
        return default
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or int(v) < 1:
        raise ConfigError(f"{name} must be a positive integer"
                          f"{' or None (auto)' if default is not None else ''}, got {v!r}")
    return int(v)


def require(module: str, extra: str, what: str) -> None:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install.

    ``what`` says what needed it ("converting torch models"), so the one line a user sees
    explains both the cause and the fix.
    """
    import importlib

    try:
        importlib.import_module(module)
    except ImportError as e:
        raise MissingExtraError(f"{what} needs {module!r}, which is not installed ({e.name or e}): "
                                f"pip install 'edgeinfer[{extra}]'") from None
