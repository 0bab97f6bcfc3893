"""One slow-headers client cannot lock the others out (issue 30, part 3).

Real servers on loopback, real sockets. 127.0.0.2 stands in for another host (the client
socket is bound to it before connecting). Before the guards in
:mod:`edgeinfer.serve.connections`, 300 connections that never finished their request head
held uvicorn's global ``limit_concurrency`` (256) and every other client got 503; a
trickled header byte kept a head open for ever. Outcomes only, never durations: the
loops below have generous upper bounds and end as soon as the outcome is seen.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from edgeinfer.errors import ConfigError
from edgeinfer.serve.config import ServeConfig
from edgeinfer.serve.connections import client_key
from edgeinfer.serve.server import serve_in_thread

SLOW_HOST = "127.0.0.2"
PARTIAL = b"POST /predict HTTP/1.1\r\nHost: edge\r\nContent-Type: image/jpeg\r\n"


def _address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def _slow_connection(addr: tuple[str, int]) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((SLOW_HOST, 0))
    s.connect(addr)
    s.sendall(PARTIAL)
    return s


@contextlib.contextmanager
def _many(addr: tuple[str, int], n: int) -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            socks.append(_slow_connection(addr))
        yield socks
    finally:
        for s in socks:
            s.close()


def _trickle(socks: list[socket.socket], i: int) -> None:
    """One more header line on each connection still open (as the slow client does)."""
    for s in socks:
        with contextlib.suppress(OSError):
            s.sendall(b"X-Slow-%d: %d\r\n" % (i, i))


def _response(s: socket.socket) -> bytes:
    """One whole response with a Content-Length (head and body may come in two writes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, data
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, data
        body += chunk
    assert len(body) == length, (head, body)  # nothing of a next response yet
    return data


def _cut(s: socket.socket, bound_s: float = 20.0, trickle_s: float = 0.3) -> bytes:
    """Trickle header lines until the server ends the connection; what it sent before.

    Returns b"" for a plain close or reset; fails if the connection is still open after
    ``bound_s`` (generous: the deadlines under test are 1 s).
    """
    s.settimeout(trickle_s)
    received = b""
    give_up = time.monotonic() + bound_s
    i = 0
    while time.monotonic() < give_up:
        try:
            s.sendall(b"X-Trickle-%d: 1\r\n" % i)
            i += 1
        except OSError:
            pass  # closed by the server: read what it said
        try:
            chunk = s.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received
        if not chunk:
            return received
        received += chunk
    pytest.fail(f"the connection still had an open request head after {bound_s:.0f} s "
                f"({i} header lines trickled)")


def test_slow_headers_client_does_not_lock_out_others(fashion_artifact, jpegs) -> None:
    """The issue's case against the default server: 300 connections from one address (more
    than --max-connections, 256) with a partial head and trickled header lines; a client at
    127.0.0.1 is served meanwhile, and the slow address is served again once it lets go."""
    with serve_in_thread([fashion_artifact], ServeConfig(port=0)) as url:
        addr = _address(url)
        with _many(addr, 300) as slow, httpx.Client(timeout=10) as c:
            for i in range(3):
                _trickle(slow, i)
                r = c.post(f"{url}/predict", content=jpegs[0],
                           headers={"Connection": "close", "Content-Type": "image/jpeg"})
                assert r.status_code == 200, (r.status_code, r.text)
                assert r.json()["predictions"][0]["label"]
        # The slots held by the slow address are given back when its connections close.
        served = None
        for _ in range(50):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((SLOW_HOST, 0))
            s.settimeout(10)
            with s:
                s.connect(addr)
                s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: edge\r\n"
                          b"Connection: close\r\n\r\n")
                served = s.recv(65536)
            if served.startswith(b"HTTP/1.1 200"):
                break
            time.sleep(0.2)
        assert served is not None and served.startswith(b"HTTP/1.1 200"), served


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_partial_head_is_cut_after_the_header_timeout(fashion_artifact, http) -> None:
    """A first request head that never completes (a header line trickled every 0.3 s) is
    answered 408 and closed, with both of uvicorn's parsers; a real request still works."""
    cfg = ServeConfig(port=0, header_timeout_s=1, http=http)
    with serve_in_thread([fashion_artifact], cfg) as url:
        with socket.create_connection(_address(url)) as s:
            s.sendall(PARTIAL)
            said = _cut(s)
        assert said == b"" or said.startswith(b"HTTP/1.1 408"), said
        assert httpx.get(f"{url}/v2/health/live", timeout=10).status_code == 200


@pytest.mark.parametrize("http", ["auto", "h11"])
def test_keep_alive_request_head_is_cut_after_the_header_timeout(fashion_artifact,
                                                                  http) -> None:
    """The deadline applies to each request on a keep-alive connection: after a served
    request, a next head that starts but never completes is cut (uvicorn's keep-alive timer
    alone is reset by every trickled byte)."""
    cfg = ServeConfig(port=0, header_timeout_s=1, http=http)
    with serve_in_thread([fashion_artifact], cfg) as url:
        with socket.create_connection(_address(url)) as s:
            s.settimeout(10)
            s.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: edge\r\n\r\n")
            first = _response(s)
            assert first.startswith(b"HTTP/1.1 200"), first
            assert b"connection: close" not in first.lower()
            s.sendall(b"GET /v2 HTTP/1.1\r\nHost: edge\r\n")
            said = _cut(s)
        assert said == b"" or said.startswith(b"HTTP/1.1 408"), said


def test_connections_past_the_per_address_cap_are_refused(fashion_artifact, jpegs) -> None:
    """With a cap of 4, the 5th and later connections from one address are answered 503 (or
    closed) without waiting for their request; 127.0.0.1 is served all along."""
    cfg = ServeConfig(port=0, max_connections_per_client=4)
    with serve_in_thread([fashion_artifact], cfg) as url, _many(_address(url), 10) as slow:
        refused = []
        for s in slow[4:]:
            s.settimeout(10)
            try:
                refused.append(s.recv(65536))
            except ConnectionResetError:
                refused.append(b"")
        assert all(r == b"" or r.startswith(b"HTTP/1.1 503") for r in refused), refused
        r = httpx.post(f"{url}/predict", content=jpegs[0], timeout=10)
        assert r.status_code == 200, r.text


def test_guard_settings_are_validated() -> None:
    for bad in ({"max_connections_per_client": -1}, {"max_connections_per_client": 1.5},
                {"header_timeout_s": -1}, {"header_timeout_s": float("nan")}):
        with pytest.raises(ConfigError):
            ServeConfig(**bad)
    ServeConfig(max_connections_per_client=0, header_timeout_s=0)  # both off


def test_clients_are_keyed_by_address_and_ipv6_by_64() -> None:
    assert client_key("127.0.0.2") == "127.0.0.2"
    assert client_key("::ffff:10.0.0.7") == "10.0.0.7"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9") \
        == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key(None) is None
