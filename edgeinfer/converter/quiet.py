"""Hide third-party chatter (torchao, absl, TF C++ logs, FutureWarnings, tqdm bars) during
export.

litert-torch, ai-edge-quantizer, TensorFlow and tf2onnx print pages of warnings and log
lines from Python *and* C++, which bury the few lines a user needs. Everything written
to file descriptors 1/2 and every Python warning inside :func:`captured` goes to a
temporary file; it is replayed on stderr only if the block fails, or always when
``verbose`` is set. Python-level ``sys.stdout``/``sys.stderr`` keep pointing at the real
terminal, so edgeinfer's own progress lines still show while C++ logs are hidden.

tqdm bars (ai_edge_quantizer's "Running Calibration") write to that Python-level stderr,
and tqdm reads ``TQDM_DISABLE`` only when it is first imported, so the environment variable
alone leaked every bar after the first import: bars are switched off in tqdm itself for the
duration of the block.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any


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


@contextlib.contextmanager
def captured(verbose: bool = False, tail_lines: int = 60) -> Iterator[None]:
    if verbose:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    root = logging.getLogger()
    old_level = root.level
    old_tqdm = os.environ.get("TQDM_DISABLE")
    os.environ["TQDM_DISABLE"] = "1"  # progress bars write to the Python-level stderr
    with tempfile.TemporaryFile(mode="w+b") as log:
        py_out, py_err = sys.stdout, sys.stderr
        sys.stdout = open(saved[0], "w", closefd=False)  # noqa: SIM115 - restored below
        sys.stderr = open(saved[1], "w", closefd=False)  # noqa: SIM115
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
            sys.stdout.flush()
            sys.stderr.flush()
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
