"""Per-connection guards uvicorn lacks: a request-head deadline and a cap per client address.

Why: uvicorn admits a connection, then waits for its request head for as long as bytes keep
coming (``timeout_keep_alive`` is reset by every byte and is only armed between requests;
a fresh connection has no timer at all), and ``limit_concurrency`` counts every open
connection globally. One client that opens a few hundred connections and trickles a header
line every few seconds therefore held every slot: everyone else got 503 for as long as it
liked (issue 30; docs/serve/slow_clients.md). Two guards, as nginx has them:

- **head deadline** (nginx ``client_header_timeout``): a connection must deliver a complete
  request head within ``header_timeout_s`` of being accepted, and every later request on a
  keep-alive connection within ``header_timeout_s`` of its first byte. Past it the
  connection gets 408 and is closed. Bytes that are not a request (stray CRLFs) start the
  clock too, so trickling them cannot hold a connection either.
- **connections per client address** (nginx ``limit_conn`` keyed by address): an address
  that already holds ``max_per_client`` connections has the next one answered 503
  (``Connection: close``, ``Retry-After``) and closed at once, before anything is parsed, so
  one address can never hold more than its share of ``max_connections``. IPv6 clients are
  keyed by their /64 (one host usually owns a whole /64); IPv4-mapped addresses as IPv4.

How: subclasses of uvicorn's own httptools and h11 protocol classes, passed as
``uvicorn.Config(http=...)``, so parsing, keep-alive and pipelining stay uvicorn's. The
deadline is armed on ``connection_made`` and, between requests, on the first byte received
while no request is in progress; it is cancelled when the parser reports a complete head
(httptools ``on_headers_complete``; h11 leaving the IDLE state). A pipelined partial head
that arrives during a response is left to uvicorn's keep-alive timer, which is armed when
that response completes and closes the connection if no further byte comes.

What is left to a reverse proxy: many addresses at once (each below its cap, together
holding ``max_connections``) - only a proxy with its own per-address limits, buffering of
request heads, or rate limits in front of the server stops that.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import time
from typing import Any, ClassVar

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("edgeinfer.serve")

_BODY_408 = b"request head not complete in time"
_BODY_503 = b"too many connections from this address"


def _raw_response(status: bytes, body: bytes, *extra: bytes) -> bytes:
    """A complete HTTP/1.1 response written as bytes: no request was parsed, so neither
    parser's response machinery can be used (h11 refuses to answer before a request)."""
    head = [b"HTTP/1.1 " + status, b"content-type: text/plain; charset=utf-8",
            b"content-length: " + str(len(body)).encode(), b"connection: close", *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def client_key(host: str | None) -> str | None:
    """The address a connection is counted against: IPv4 as is, IPv6 by its /64."""
    if not host:
        return None
    try:
        addr = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(addr, ipaddress.IPv6Address):
        if addr.ipv4_mapped is not None:
            return str(addr.ipv4_mapped)
        return str(ipaddress.IPv6Network((addr, 64), strict=False))
    return str(addr)


class ClientLimits:
    """One server's guard settings and its open connections per client address.

    Only touched from the server's event loop thread, hence no lock. ``refused`` and
    ``head_timeouts`` count what the guards did, for tools and tests; warnings are logged
    at most once per ``LOG_EVERY_S`` per kind, so a flood cannot flood the log.
    """

    LOG_EVERY_S = 10.0

    def __init__(self, header_timeout_s: float, max_per_client: int) -> None:
        self.header_timeout_s = header_timeout_s  # 0: no deadline
        self.max_per_client = max_per_client  # 0: no cap
        self.open: dict[str, int] = {}
        self.refused = 0
        self.head_timeouts = 0
        self._logged: dict[str, tuple[float, int]] = {}

    def admit(self, key: str | None) -> bool:
        if key is None or not self.max_per_client:
            return True
        n = self.open.get(key, 0)
        if n >= self.max_per_client:
            self.refused += 1
            self._warn("refused", f"connections from {key} past its cap of "
                       f"{self.max_per_client} (--max-connections-per-client) refused")
            return False
        self.open[key] = n + 1
        return True

    def release(self, key: str) -> None:
        n = self.open.get(key, 0) - 1
        if n > 0:
            self.open[key] = n
        else:
            self.open.pop(key, None)

    def timed_out(self, key: str | None) -> None:
        self.head_timeouts += 1
        self._warn("timeout", f"connections without a complete request head within "
                   f"{self.header_timeout_s:g} s (--header-timeout) cut with 408, "
                   f"latest from {key}")

    def _warn(self, kind: str, what: str) -> None:
        now = time.monotonic()
        last, count = self._logged.get(kind, (-self.LOG_EVERY_S, 0))
        if now - last >= self.LOG_EVERY_S:
            log.warning("%d %s", count + 1, what)
            self._logged[kind] = (now, 0)
        else:
            self._logged[kind] = (last, count + 1)


class _Guard:
    """The guards, mixed in before one of uvicorn's protocol classes (see the module doc).

    The uvicorn attributes used (``transport``, ``client``, ``cycle``, ``loop``) are the
    same in both of its HTTP/1.1 implementations.
    """

    limits: ClassVar[ClientLimits]
    transport: asyncio.Transport
    client: tuple[str, int] | None
    cycle: Any
    loop: asyncio.AbstractEventLoop

    _head_timer: asyncio.TimerHandle | None = None
    _counted: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        key = client_key(self.client[0] if self.client else None)
        if not self.limits.admit(key):
            # Refused before a byte is parsed; uvicorn's connection_lost still runs.
            transport.write(_raw_response(b"503 Service Unavailable", _BODY_503,
                                          b"retry-after: 1"))
            transport.close()
            return
        self._counted = key
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_guard()
        super().connection_lost(exc)  # type: ignore[misc]

    def handle_websocket_upgrade(self, *args: Any) -> None:
        # The connection leaves this protocol without connection_lost: give its slot back.
        self._end_guard()
        super().handle_websocket_upgrade(*args)  # type: ignore[misc]

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self._between_requests():
            self._arm_head_deadline()  # the first byte of the next request head
        super().data_received(data)  # type: ignore[misc]

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_head_deadline(self) -> None:
        if self.limits.header_timeout_s and self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout_s,
                                                    self._head_deadline_passed)

    def _head_complete(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _end_guard(self) -> None:
        self._head_complete()
        if self._counted is not None:
            self.limits.release(self._counted)
            self._counted = None

    def _head_deadline_passed(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._between_requests():
            return  # a head completed meanwhile: its request runs under --timeout
        self.limits.timed_out(self._counted)
        self.transport.write(_raw_response(b"408 Request Timeout", _BODY_408))
        self.transport.close()


class GuardedH11(_Guard, H11Protocol):
    """uvicorn's pure-Python h11 protocol with the guards."""

    def handle_events(self) -> None:
        super().handle_events()
        # h11 leaves IDLE once it has read a complete request head (or failed on one).
        if self.conn.their_state is not h11.IDLE:
            self._head_complete()


@functools.cache
def _httptools_class() -> type[asyncio.Protocol] | None:
    """uvicorn's httptools protocol with the guards, or None without httptools."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return None

    class GuardedHttpTools(_Guard, HttpToolsProtocol):
        """uvicorn's httptools protocol with the guards."""

        def on_headers_complete(self) -> None:
            self._head_complete()
            super().on_headers_complete()

    return GuardedHttpTools


def guarded_protocol(http: str, header_timeout_s: float,
                     max_per_client: int) -> type[asyncio.Protocol] | str:
    """What to pass as ``uvicorn.Config(http=...)``: the guarded class for ``http``
    (``"auto"``: httptools when installed, as uvicorn picks; ``"h11"``), with its own
    :class:`ClientLimits` (one per server: counts are per listening server). With both
    guards off, uvicorn's own class name, so "off" is exactly uvicorn's behaviour."""
    if not header_timeout_s and not max_per_client:
        return "auto" if http == "auto" else "h11"
    base = (_httptools_class() if http == "auto" else None) or GuardedH11
    limits = ClientLimits(header_timeout_s, max_per_client)
    return type(base.__name__, (base,), {"limits": limits, "__module__": __name__})
