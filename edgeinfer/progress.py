"""Progress: the one type every long step reports through, and the one reporter.

Why one: conversion, calibration, the ladder, doctor, bench and pack all take minutes on a
small device, and each once declared its own callback type (two signatures among them).
A step calls ``say("message")`` for a line, or ``say("stage", done, total)`` for counted
work; the reporter decides how a person sees it: one line per message on stderr, and for
counted work a bar redrawn in place on a terminal, or one line when a stage finishes in a
log or a pipe (CI logs stay readable).
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Progress(Protocol):
    """``say(message)`` or ``say(stage, done, total)``."""

    def __call__(self, message: str, done: int | None = None,
                 total: int | None = None) -> None: ...


def silent(message: str, done: int | None = None, total: int | None = None) -> None:
    """The reporter of a quiet run: says nothing."""


class Reporter:
    """Lines ``[edgeinfer] message`` on a stream (stderr by default); counted stages as a bar
    on a terminal, else one line per finished stage."""

    def __init__(self, stream: TextIO | None = None, width: int = 28) -> None:
        self.stream = stream
        self.width = width
        self.t0 = time.perf_counter()
        self._last = ""

    def _out(self) -> TextIO:
        # Looked up at each call: tests and captured() may swap sys.stderr meanwhile.
        return self.stream or sys.stderr

    def __call__(self, message: str, done: int | None = None,
                 total: int | None = None) -> None:
        out = self._out()
        if done is None or total is None:
            out.write(f"[edgeinfer] {message}\n")
            out.flush()
            return
        frac = done / total if total else 1.0
        secs = time.perf_counter() - self.t0
        if bool(getattr(out, "isatty", lambda: False)()):
            fill = int(round(self.width * frac))
            out.write(f"\r[edgeinfer] {message:<28.28} [{'#' * fill}{'.' * (self.width - fill)}]"
                      f" {done}/{total} {secs:5.1f}s" + ("\n" if frac >= 1 else ""))
            out.flush()
        elif frac >= 1 and message != self._last:
            out.write(f"[edgeinfer] {message}: done ({total}) {secs:.1f}s\n")
            out.flush()
            self._last = message
