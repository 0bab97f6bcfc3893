"""Drop one-time banners that native libraries print on file descriptor 2.

Why at the descriptor: LiteRT prints "INFO: Created TensorFlow Lite XNNPACK delegate for
CPU." from C++ straight to stderr the first time an interpreter applies its default
delegate, on every TFLite command (predict, verify, serve, check). No environment variable
reaches that logger (TF_CPP_MIN_LOG_LEVEL does not) and no Python logger sees it. The
runtime may not import the converter's ``quiet.captured()`` (the floors rule) and that hides
everything anyway; here only the named banners are dropped and every other line written
during the block (a real LiteRT error) is replayed on stderr when it ends.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator

# One redirect of descriptor 2 at a time: two nested ones would restore in the wrong order.
_LOCK = threading.Lock()


@contextlib.contextmanager
def without_banners(*banners: str) -> Iterator[None]:
    """Descriptor 2 goes to a temporary file for the block; its lines come back on stderr,
    except those containing one of ``banners``."""
    with _LOCK:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        try:
            saved = os.dup(2)
        except OSError:  # no descriptor 2 (a daemon): nothing to filter
            yield
            return
        with tempfile.TemporaryFile() as log:
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                log.seek(0)
                kept = [ln for ln in log.read().splitlines(keepends=True)
                        if not any(b.encode() in ln for b in banners)]
                if kept:
                    os.write(2, b"".join(kept))


#: LiteRT's banner, printed once per process when an interpreter applies its default delegate.
XNNPACK_BANNER = "Created TensorFlow Lite XNNPACK delegate"
_SEEN: set[str] = set()


@contextlib.contextmanager
def banner_once(banner: str, active: bool = True) -> Iterator[None]:
    """:func:`without_banners` for a banner a library prints once per process: only until
    the first block that could print it has run (later blocks run unredirected)."""
    if not active or banner in _SEEN:
        yield
        return
    with without_banners(banner):
        yield
    _SEEN.add(banner)
