"""Starting a server never closes a stream someone else owns.

uvicorn's default logging setup runs ``logging.config.dictConfig``, which first closes every
handler in the process; absl's handler (installed when TensorFlow or LiteRT is imported)
closes, on close, the stream it was created with unless that stream is the current
``sys.stderr``. A server started after such an import closed pytest's capture file (every
later test of the worker errored with "I/O operation on closed file", depending on order)
and would close an application's log stream the same way.
"""

from __future__ import annotations

import io
import logging
import sys

import pytest

pytest.importorskip("uvicorn")
absl_logging = pytest.importorskip("absl.logging")


async def _app(scope, receive, send) -> None:  # any ASGI app: only the config is built
    raise AssertionError("not served")


def test_a_server_config_does_not_close_another_owners_stream(monkeypatch):
    from edgeinfer.serve.config import ServeConfig
    from edgeinfer.serve.server import uvicorn_config

    owned = io.StringIO()  # e.g. pytest's capture file, or an application's log stream
    handler = absl_logging.PythonHandler(owned)  # as absl binds sys.stderr at import
    logging.getLogger("absl-like").addHandler(handler)
    try:
        monkeypatch.setattr(sys, "stderr", io.StringIO())  # another stderr is current
        uvicorn_config(_app, ServeConfig(port=0), log_level="warning")
        assert not owned.closed
    finally:
        logging.getLogger("absl-like").removeHandler(handler)


def test_uvicorn_lines_still_reach_the_current_stderr(capsys):
    from edgeinfer.serve.config import ServeConfig
    from edgeinfer.serve.server import uvicorn_config

    uvicorn_config(_app, ServeConfig(port=0), log_level="warning")
    logging.getLogger("uvicorn.error").error("a uvicorn error line")
    assert "a uvicorn error line" in capsys.readouterr().err
