"""Reading files the runtime is handed: only regular files, with a size limit, one-line errors.

Why a helper: ``open()`` on a FIFO (named pipe) or a character device blocks until a writer
appears, so a path that is not a regular file must be refused *before* it is opened. Images,
models and parity packs all come through here.
"""

from __future__ import annotations

import os
import stat
from typing import Any

from edgeinfer.errors import EdgeInferError, ModelError


def display(path: Any) -> str:
    """A path as one line of text for error messages."""
    s = os.fsdecode(os.fspath(path))
    return s.encode("unicode_escape").decode("ascii") if not s.isprintable() else s


def reason(e: BaseException) -> str:
    return (getattr(e, "strerror", None) or str(e)).replace("\n", " ")


def read_regular(path: Any, what: str, error: type[EdgeInferError],
                 max_bytes: int | None = None,
                 too_large: type[EdgeInferError] | None = None) -> bytes:
    """The bytes of a regular file; ``error`` for a missing/unreadable/non-regular path.

    ``max_bytes``: files above it raise ``too_large`` (default ``error``) without being read.
    """
    name = display(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{what} {name} does not exist: check the path") from None
    except (OSError, ValueError) as e:  # permissions, ENAMETOOLONG, embedded NUL bytes
        raise error(f"cannot read {what} {name}: {reason(e)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise error(f"{what} {name} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a named pipe (FIFO)" if stat.S_ISFIFO(st.st_mode) else
                "a socket" if stat.S_ISSOCK(st.st_mode) else "a device")
        raise error(f"{what} {name} is {kind}, not a regular file: only regular files are read")
    if max_bytes is not None and st.st_size > max_bytes:
        raise (too_large or error)(f"{what} {name} is {st.st_size} bytes, above the limit of "
                                   f"{max_bytes}; pass a smaller file or raise max_bytes")
    try:
        with open(path, "rb") as f:
            return f.read() if max_bytes is None else f.read(max_bytes + 1)[:max_bytes + 1]
    except OSError as e:
        raise error(f"cannot read {what} {name}: {reason(e)}") from None


ModelSource = str | os.PathLike | bytes | bytearray | memoryview


def load_model_bytes(model: ModelSource) -> tuple[bytes, str]:
    """(bytes, a name for messages) of a model given as a path or as bytes."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        return bytes(model), "model bytes"
    return read_regular(model, "model file", ModelError), os.fsdecode(os.fspath(model))

