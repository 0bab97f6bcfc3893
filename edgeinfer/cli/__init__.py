"""Command line: argument parsing only; every command calls the public API.

Each command lives in its own module of this package (``register(sub)`` adds its parser
and handler), so commands are added without touching the others. Any ``EdgeInferError``
becomes one line on stderr and exit code 2, never a traceback. Heavy modules (torch, the
converter) are imported inside the handlers that need them.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from edgeinfer.cli.common import EXIT_USAGE, Handler, err
from edgeinfer.errors import EdgeInferError

#: Command modules, in the order ``edgeinfer --help`` lists them.
COMMANDS = ("convert", "info", "predict", "check", "bench", "pack", "verify", "audit", "doctor",
            "serve", "watch", "export")


def build_parser() -> argparse.ArgumentParser:
    from edgeinfer._version import __version__

    parser = argparse.ArgumentParser(
        prog="edgeinfer", description="Convert, serve and check image CNNs for edge devices.")
    parser.add_argument("--version", action="version", version=f"edgeinfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"edgeinfer.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Factories such as ``mypkg.models:build`` are found in the current folder, as with
    # ``python -m``: a console script's sys.path[0] is its bin/ folder, not the cwd.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except EdgeInferError as e:
        err(str(e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        err("interrupted")
        return 130


__all__ = ["COMMANDS", "build_parser", "main"]
