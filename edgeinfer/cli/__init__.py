"""Command line: argument parsing only; every command calls the public API.

Each command lives in its own module of this package (``register(sub)`` adds its parser
and handler), so commands are added without touching the others. Any ``EdgeInferError``
becomes one line on stderr and exit code 2, never a traceback. Heavy modules (torch, the
converter) are imported inside the handlers that need them. Options may follow a command's
list of paths (``predict m.onnx IMG... --top-k 1``), and a reader that leaves early
(``| head -1``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Sequence

from edgeinfer.cli.common import EXIT_USAGE, Handler, err
from edgeinfer.errors import EdgeInferError

#: Command modules, in the order ``edgeinfer --help`` lists them.
COMMANDS = ("convert", "info", "predict", "check", "bench", "pack", "verify", "audit", "doctor",
            "monitor", "serve", "ray_certs", "watch", "export")


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
    args = _parse(parser, list(sys.argv[1:] if argv is None else argv))
    handler: Handler = args.handler
    try:
        return handler(args)
    except BrokenPipeError:
        return _reader_left()
    except EdgeInferError as e:
        err(str(e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        err("interrupted")
        return 130


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; a command whose paths were followed by options is parsed again with
    ``parse_intermixed_args``.

    Why: argparse gives a ``nargs='*'`` positional only the paths *before* the first
    option, so ``predict model.onnx --json --top-k 1 imgs/*.png`` ended in "unrecognized
    arguments: imgs/a.png ...", although shells and other tools accept options anywhere.
    """
    args, rest = parser.parse_known_args(argv)
    if not rest:
        return args
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices[args.command]
    try:
        again = command.parse_intermixed_args(argv[argv.index(args.command) + 1:])
    except TypeError:  # a parser feature intermixed parsing does not support
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    again.command = args.command
    return again


def _reader_left() -> int:
    """``edgeinfer predict ... | head -1``: the reader closed the pipe. Stop quietly, as
    ``cat`` does: no BrokenPipeError traceback, and stdout/stderr pointed at /dev/null so
    the interpreter's final flush cannot print one either. 141 = 128 + SIGPIPE, the status
    a shell reports for a C program stopped the same way."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # no descriptor
            os.dup2(devnull, stream.fileno())
    os.close(devnull)
    return 141


__all__ = ["COMMANDS", "build_parser", "main"]
