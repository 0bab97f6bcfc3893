"""The server-wide memory budget: bytes held by the requests in flight, bounded as a whole.

Why a global budget on top of the per-request limits: each request alone may be within
``max_body_bytes`` and ``max_pixels``, yet 128 admitted requests x 32 MiB bodies is 4 GiB,
far past what an edge box has. Every request charges what it makes the server hold — its
body as the bytes arrive, then its decoded frames and TTA views before they are decoded —
against one :class:`ByteBudget`; a charge that would pass the budget is refused with 503 +
Retry-After (the server is busy, the same request may fit in a moment), one that could
never fit with 413. A request's charges are released when it is answered.

A job that timed out may still be running in a worker thread (a thread cannot be
interrupted): its charges are released with its response, and any charge it attempts
afterwards is refused, so an abandoned job stops at its next step instead of growing.
"""

from __future__ import annotations

import threading

from edgeinfer.serve.protocol import RequestError


class Overloaded(RequestError):
    """The server's in-flight byte budget is spent: 503, retry after a moment."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 503)


class ByteBudget:
    """Bytes held by all requests in flight, at most ``limit`` (thread-safe)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._lock = threading.Lock()

    def take(self, n: int, what: str) -> None:
        if n > self.limit:
            raise RequestError(f"{what} needs {n / 2**20:.1f} MiB, above the server's in-flight "
                               f"memory budget of {self.limit / 2**20:.0f} MiB: send less per "
                               "request", 413)
        with self._lock:
            if self.used + n > self.limit:
                raise Overloaded(f"the server holds {self.used / 2**20:.0f} MiB for requests in "
                                 f"flight; {what} needs {n / 2**20:.1f} MiB more than its "
                                 f"{self.limit / 2**20:.0f} MiB budget allows: retry shortly")
            self.used += n
            self.peak = max(self.peak, self.used)

    def give_back(self, n: int) -> None:
        with self._lock:
            self.used -= n


class Charge:
    """One request's share of the budget; :meth:`close` returns all of it at once."""

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self._held = 0
        self._closed = False
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        return self._held

    def add(self, n: int, what: str) -> None:
        with self._lock:
            if self._closed:
                raise Overloaded("the request was already answered (timed out); dropping its "
                                 "remaining work")
            self._budget.take(n, what)
            self._held += n

    def close(self) -> None:
        with self._lock:
            self._closed = True
            held, self._held = self._held, 0
        self._budget.give_back(held)
