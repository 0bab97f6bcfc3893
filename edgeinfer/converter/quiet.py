"""Hide third-party chatter (torchao, absl, TF C++ logs, FutureWarnings, tqdm bars) during
export.

litert-torch, ai-edge-quantizer, TensorFlow and tf2onnx print pages of warnings and log
lines from Python *and* C++, which bury the few lines a user needs. Everything written
to file descriptors 1/2 and every Python warning inside :func:`captured` goes to a
temporary file; it is replayed on stderr only if the block fails, or always when
``verbose`` is set. Python-level ``sys.stdout``/``sys.stderr`` keep pointing at the real
terminal, so edgeinfer's own progress lines still show while C++ logs are hidden.

Why the terminal streams are never closed: a library that creates a
``logging.StreamHandler`` inside the block keeps a reference to whatever ``sys.stderr``
was then, for the life of the process. An earlier version handed out a stream over a
duplicated descriptor and closed that descriptor on exit; the next ``open()`` reused the
number and a library warning landed in an unrelated JSON file. Now ``sys.stdout`` and
``sys.stderr`` are swapped only when they write to descriptors 1/2 themselves (a real
terminal, pipe or log file), and the replacement is a process-wide stream over a private
duplicate of that descriptor, cached per target and never closed, so a handler that kept
it writes where the user's output goes. Streams that do not write to 1/2 (pytest's
capture, a StringIO) are left alone: redirecting the descriptors does not touch them.

tqdm bars (ai_edge_quantizer's "Running Calibration") write to that Python-level stderr,
and tqdm reads ``TQDM_DISABLE`` only when it is first imported, so the environment variable
alone leaked every bar after the first import: bars are switched off in tqdm itself for the
duration of the block.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

# (fd, device, inode, encoding) of a target -> a stream over a private dup of it, never closed.
_TERMINALS: dict[tuple[int, int, int, str], TextIO] = {}


@contextlib.contextmanager
def _tqdm_off() -> Iterator[None]:
    """Every tqdm bar created inside the block is disabled (subclasses included)."""
    try:
        import tqdm
    except ImportError:  # nothing to silence
        yield
        return
    cls = tqdm.tqdm
    orig = cls.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        orig(self, *args, **kwargs)

    cls.__init__ = init  # type: ignore[method-assign]
    try:
        yield
    finally:
        cls.__init__ = orig  # type: ignore[method-assign]


def _writes_to(stream: TextIO, fd: int) -> bool:
    try:
        return stream.fileno() == fd
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False


def _terminal(stream: TextIO, fd: int) -> TextIO:
    """A stream to where ``fd`` points now, valid for the life of the process.

    Cached per target (device + inode of what ``fd`` points to), so repeated blocks reuse
    one descriptor instead of leaking one per call; never closed, so any handler that kept
    it keeps writing to that target and never to a file that reused a descriptor number.
    """
    st = os.fstat(fd)
    encoding = getattr(stream, "encoding", None) or "utf-8"
    key = (fd, st.st_dev, st.st_ino, encoding)
    out = _TERMINALS.get(key)
    if out is None:
        out = _TERMINALS[key] = os.fdopen(  # noqa: SIM115 - process-wide, on purpose
            os.dup(fd), "w", buffering=1, encoding=encoding,
            errors=getattr(stream, "errors", None) or "backslashreplace")
    return out


@contextlib.contextmanager
def captured(verbose: bool = False, tail_lines: int = 60) -> Iterator[None]:
    """Descriptors 1/2 and Python warnings go to a temporary file for the block; it is
    replayed (last ``tail_lines``) on stderr if the block raises."""
    if verbose:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    py_out, py_err = sys.stdout, sys.stderr
    # Before the redirect: the terminals are what 1/2 point to now.
    new_out = _terminal(py_out, 1) if _writes_to(py_out, 1) else py_out
    new_err = _terminal(py_err, 2) if _writes_to(py_err, 2) else py_err
    saved = os.dup(1), os.dup(2)  # private: never handed to a stream, closed below
    root = logging.getLogger()
    old_level = root.level
    old_tqdm = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # progress bars write to the Python-level stderr
    with tempfile.TemporaryFile(mode="w+b") as log:
        sys.stdout, sys.stderr = new_out, new_err
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        ok = False
        try:
            with warnings.catch_warnings(), _tqdm_off():
                warnings.simplefilter("ignore")
                root.setLevel(logging.ERROR)
                yield
            ok = True
        finally:
            root.setLevel(old_level)
            if old_tqdm is None:
                os.environ.pop("TQDM_DISABLE", None)
            else:
                os.environ["TQDM_DISABLE"] = old_tqdm
            for s in {id(x): x for x in (sys.stdout, sys.stderr, new_out, new_err)}.values():
                with contextlib.suppress(OSError, ValueError):
                    s.flush()
            sys.stdout, sys.stderr = py_out, py_err
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            if not ok:
                log.seek(0)
                lines = log.read().decode("utf-8", "replace").splitlines()[-tail_lines:]
                if lines:
                    print("[edgeinfer] third-party output before the failure (last "
                          f"{len(lines)} lines):", file=sys.stderr)
                    print("\n".join(lines), file=sys.stderr)
