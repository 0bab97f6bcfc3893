"""captured(): third-party output on descriptors 1/2 is hidden, edgeinfer's own lines are
not, and nothing it hands out inside the block is closed afterwards.

The bug this guards against: a logging handler created inside the block (TensorFlow and
absl create theirs on import) kept the replacement ``sys.stderr``, whose descriptor was
closed on exit; the next ``open()`` reused the number and a library warning landed in an
unrelated JSON file, and a cross-command test died depending on test order.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

from edgeinfer.converter.quiet import captured


def _emit(handler: logging.Handler, message: str) -> None:
    handler.emit(logging.LogRecord("lib", logging.WARNING, __file__, 1, message, None, None))
    handler.flush()


def test_handler_created_inside_never_writes_into_a_file_opened_later(tmp_path) -> None:
    with captured():
        handler = logging.StreamHandler()  # binds sys.stderr as it is inside the block
        out = sys.stdout
    files = [open(tmp_path / f"report{i}.json", "w") for i in range(8)]  # noqa: SIM115
    try:  # the lowest free descriptor numbers, i.e. any the block closed on exit
        for f in files:
            f.write("{}")
            f.flush()
        _emit(handler, "a library warning after the block")
        print("a print through the stdout of the block", file=out, flush=True)
    finally:
        for f in files:
            f.close()
    assert [(tmp_path / f"report{i}.json").read_text() for i in range(8)] == ["{}"] * 8


_CHILD = textwrap.dedent("""
    import logging, os, sys
    from edgeinfer.converter.quiet import captured

    with captured():
        print("own progress line", file=sys.stderr)
        os.write(2, b"C++ chatter on fd 2\\n")
        os.write(1, b"C++ chatter on fd 1\\n")
        handler = logging.StreamHandler()
    files = [open(f"{sys.argv[1]}.{i}", "w") for i in range(4)]  # reuse any freed numbers
    for f in files:
        f.write("{}")
        f.flush()
    handler.emit(logging.LogRecord("lib", 30, "x", 1, "late warning", None, None))
    handler.flush()
    for f in files:
        f.close()
    try:
        with captured():
            os.write(2, b"chatter before a failure\\n")
            raise RuntimeError("export failed")
    except RuntimeError:
        pass
    print("stdout still works")
""")


def test_real_descriptors_hidden_shown_and_replayed(tmp_path: Path) -> None:
    """In a process whose stdout/stderr are the real descriptors 1/2 (pipes here): C-level
    chatter is hidden, edgeinfer's line shows, a handler created inside writes to the real
    stderr after the block (not into the file opened next), and a failure replays."""
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-c", _CHILD, str(report)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert [Path(f"{report}.{i}").read_text() for i in range(4)] == ["{}"] * 4
    assert "own progress line" in r.stderr and "late warning" in r.stderr
    assert "C++ chatter" not in r.stderr + r.stdout
    assert "third-party output before the failure" in r.stderr
    assert "chatter before a failure" in r.stderr
    assert r.stdout == "stdout still works\n"
