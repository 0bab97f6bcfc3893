"""The JSON types of a PreprocessSpec's fields, checked before any value is used.

Why a check of its own: a spec arrives as JSON from users, configs and artifacts, and Python
coerces too kindly - ``"antialias": "false"`` is a non-empty string and so meant True,
``"size": [224.7, 224]`` was truncated to 224, ``"scale": "0.1"`` failed deep inside numpy.
Each field must have the type the spec documents, or the spec is refused in one line.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeinfer.errors import SpecError

STRINGS = ("frame_color", "model_color", "resize", "interpolation", "layout", "size_rounding",
           "crop_rounding")


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_))


def check_field_types(spec: Any) -> None:
    """SpecError naming the first field whose value has the wrong JSON type."""
    def bad(name: str, want: str) -> SpecError:
        return SpecError(f"spec.{name} must be {want}, got {getattr(spec, name)!r}")

    if not isinstance(spec.antialias, (bool, np.bool_)):
        raise bad("antialias", "true or false")
    for name in STRINGS:
        if not isinstance(getattr(spec, name), str):
            raise bad(name, "a string")
    for name in ("scale", "pad_value"):
        if not _is_num(getattr(spec, name)):
            raise bad(name, "a number")
    if not _is_int(spec.version):
        raise bad("version", "an integer")
    if spec.resize_shorter is not None and not _is_int(spec.resize_shorter):
        raise bad("resize_shorter", "an integer")
    for name in ("size", "crop_from"):
        v = getattr(spec, name)
        seq = isinstance(v, (list, tuple, np.ndarray))
        if v is not None and not (seq and all(map(_is_int, v))):
            raise bad(name, "[height, width] in whole pixels")
    for name in ("mean", "std"):
        v = getattr(spec, name)
        seq = isinstance(v, (list, tuple, np.ndarray))
        if not (_is_num(v) or (seq and all(map(_is_num, v)))):
            raise bad(name, "a number or a list of numbers")
