"""Run the app under uvicorn with a graceful, exit-0 shutdown on SIGTERM or SIGINT.

Why a uvicorn subclass: on SIGTERM uvicorn already stops accepting connections, lets
in-flight requests finish (bounded by ``timeout_graceful_shutdown``) and runs the app's
shutdown, but it then re-raises the signal, so the process dies *by* SIGTERM (exit status
143) even though it shut down cleanly. Orchestrators (Kubernetes, systemd) read that as
a crash. Here the signal only starts the drain: readiness turns 503 at once (so a load
balancer stops sending), requests still arriving on open connections get 503 with
``Connection: close``, and ``serve`` returns 0 when the drain is done.

HTTP implementation: with the ``serve`` extra's ``uvicorn[standard]``, uvicorn parses HTTP
with httptools and runs on uvloop (``http="auto"``); ``http="h11"`` forces the pure-Python
h11 parser on asyncio, which is also what runs when those two are not installed. Measured
in docs/serve/load.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any

from edgeinfer.errors import ConfigError, require
from edgeinfer.serve.config import ServeConfig

require("uvicorn", "serve", "edgeinfer serve")

import uvicorn  # noqa: E402 - after the extra check

from edgeinfer.serve.app import ServerState, create_app  # noqa: E402
from edgeinfer.serve.connections import guarded_protocol  # noqa: E402
from edgeinfer.serve.models import ModelSet  # noqa: E402


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ServerState) -> None:
        super().__init__(config)
        self._state = state

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)
        # Unlike uvicorn's own, do not re-raise the signal: the drain was the whole point.

    def handle_exit(self, sig: int, frame: object) -> None:
        self._state.draining = True
        super().handle_exit(sig, frame)  # type: ignore[arg-type]


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: any free port), bound before the models load."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets whose proto says
    # TCP, and without it a keep-alive response written in two parts (headers, body) waits
    # for the client's delayed ACK: 40 ms per request (measured; see docs/serve/README.md).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def uvicorn_config(app: object, cfg: ServeConfig, **kw: object) -> uvicorn.Config:
    """The uvicorn settings every entry point shares: connection caps, parser, loop.

    The parser is uvicorn's, subclassed for the request-head deadline and the cap per client
    address (:mod:`edgeinfer.serve.connections`): uvicorn's ``limit_concurrency`` alone let
    one slow client hold every connection slot.
    """
    auto = cfg.http == "auto"
    http = guarded_protocol(cfg.http, cfg.header_timeout_s, cfg.max_connections_per_client)
    _uvicorn_logging()
    return uvicorn.Config(app, lifespan="on", limit_concurrency=cfg.max_connections,
                          http=http, loop="auto" if auto else "asyncio",  # type: ignore[arg-type]
                          timeout_graceful_shutdown=int(cfg.timeout_s) + 5,
                          timeout_keep_alive=5, log_config=None, **kw)


class _CurrentStderr(logging.StreamHandler):
    """Writes each record to ``sys.stderr`` as it is at that moment, and closes nothing."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:  # StreamHandler.__init__ assigns one: ignored
        pass


def _uvicorn_logging() -> None:
    """uvicorn's log lines without uvicorn's ``logging.config.dictConfig``.

    Why: dictConfig first *closes every handler in the process*. absl (imported with
    TensorFlow and LiteRT) installs a handler that, on close, closes the stream it was
    created with unless that stream is the current ``sys.stderr``; so starting a server in a
    process that had imported TensorFlow closed whatever stderr was current at that import
    (measured: pytest's own capture file, after which every later test of that worker
    errored; in an application, its log file). Here uvicorn's two loggers get one handler
    each, added once, that looks up ``sys.stderr`` per record.
    """
    from uvicorn.logging import AccessFormatter, DefaultFormatter

    for name, fmt in (("uvicorn", DefaultFormatter("%(levelprefix)s %(message)s")),
                      ("uvicorn.access", AccessFormatter(
                          '%(levelprefix)s %(client_addr)s - "%(request_line)s" '
                          "%(status_code)s"))):
        log = logging.getLogger(name)
        if not any(isinstance(h, _CurrentStderr) for h in log.handlers):
            handler = _CurrentStderr()
            handler.setFormatter(fmt)
            log.addHandler(handler)
        log.propagate = False


def serve(artifacts: Sequence[str | os.PathLike], cfg: ServeConfig | None = None, *,
          log_level: str = "warning", access_log: bool = False,
          announce: Callable[[str], None] | None = None) -> int:
    """Serve ``artifacts`` until SIGTERM/SIGINT; returns 0 after a graceful drain.

    ``announce`` receives one line with the address once the socket is bound (default:
    printed to stderr), e.g. for a caller that asked for port 0.
    """
    cfg = cfg or ServeConfig()
    sock = bind(cfg.host, cfg.port)
    try:
        models = ModelSet.load(artifacts, cfg)
        app = create_app(models, cfg)
        host, port = sock.getsockname()[:2]
        config = uvicorn_config(app, cfg, log_level=log_level, access_log=access_log)
        server = _Server(config, app.state.server)
        url = f"http://{host}:{port}" if ":" not in host else f"http://[{host}]:{port}"
        line = (f"serving {', '.join(models.names())} on {url} (Open Inference Protocol: "
                f"{url}/v2/models/NAME/infer; {url}/predict; {url}/metrics)")
        (announce or (lambda s: print(f"[edgeinfer] {s}", file=sys.stderr, flush=True)))(line)
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0


@contextlib.contextmanager
def serve_in_thread(artifacts: Sequence[str | os.PathLike] | ModelSet,
                    cfg: ServeConfig | None = None) -> Iterator[str]:
    """Run a real server in a background thread for the ``with`` block; yields its URL.

    For tests and notebooks: the same app, uvicorn and sockets as ``serve``, without
    signal handling (only the main thread may own signals). Leaving the block drains the
    server as SIGTERM would.
    """
    cfg = cfg or ServeConfig(port=0)
    sock = bind(cfg.host, cfg.port)
    try:
        models = artifacts if isinstance(artifacts, ModelSet) else ModelSet.load(artifacts, cfg)
        app = create_app(models, cfg)
        server = _Server(uvicorn_config(app, cfg, log_level="warning"), app.state.server)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                  name="edgeinfer-serve", daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise ConfigError("the server thread ended during start-up; see the log")
            threading.Event().wait(0.01)
        host, port = sock.getsockname()[:2]
        try:
            yield f"http://{host}:{port}"
        finally:
            app.state.server.draining = True
            server.should_exit = True
            thread.join(timeout=cfg.timeout_s + 10)
    finally:
        sock.close()
