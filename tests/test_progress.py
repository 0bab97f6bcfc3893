"""The one progress reporter (edgeinfer.progress): lines, and counted stages in logs."""

from __future__ import annotations

import io

from edgeinfer.progress import Reporter, silent


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_message_is_one_line():
    buf = io.StringIO()
    Reporter(buf)("exporting")
    assert buf.getvalue() == "[edgeinfer] exporting\n"


def test_counted_stage_in_a_log_is_one_line_when_done():
    buf = io.StringIO()
    say = Reporter(buf)
    say("onnx-fp32", 5, 10)
    say("onnx-fp32", 10, 10)
    say("onnx-fp32", 10, 10)  # a repeat of the finished stage is not logged again
    assert buf.getvalue().count("\n") == 1 and "onnx-fp32: done (10)" in buf.getvalue()


def test_counted_stage_on_a_terminal_is_a_bar_redrawn_in_place():
    buf = _Tty()
    say = Reporter(buf)
    say("onnx-fp32", 5, 10)
    say("onnx-fp32", 10, 10)
    out = buf.getvalue()
    assert out.count("\r") == 2 and out.endswith("\n") and out.count("\n") == 1
    assert "5/10" in out and "10/10" in out


def test_the_default_stream_is_read_at_each_call(capsys):
    say = Reporter()
    say("first")
    assert "[edgeinfer] first" in capsys.readouterr().err


def test_silent_says_nothing(capsys):
    silent("x")
    silent("x", 1, 2)
    assert capsys.readouterr() == ("", "")
