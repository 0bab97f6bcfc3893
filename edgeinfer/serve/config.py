"""The server's knobs and limits in one frozen object, validated once at start-up.

Why the defaults: a server on an edge box must survive a hostile or broken client without
running out of memory, so every resource a request can claim is bounded before it is
claimed — bytes (``max_body_bytes``, checked from Content-Length and again while the body
streams in; ``max_json_bytes`` for the JSON part, which Python inflates about 8x when it
parses a list of numbers), pixels (``max_pixels``, per request, read from the image headers
before anything is decoded, and charged for what will be computed: frames x TTA views),
images per request (``max_images``), time (``timeout_s``; ``body_timeout_s`` for the body
alone, so slow uploads cannot hold the admission slots for long), concurrency
(``max_queue`` requests admitted at once, ``max_connections`` open connections; the next
gets 503 + Retry-After; ``max_connections_per_client`` of them per client address, so one
address cannot take every slot, and ``header_timeout_s`` for a complete request head, so a
client trickling header bytes cannot hold one for long: :mod:`edgeinfer.serve.connections`)
and memory as a whole (``max_inflight_bytes``: bodies plus decoded
frames of every request in flight, see :mod:`edgeinfer.serve.limits`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeinfer.errors import ConfigError, positive_int
from edgeinfer.runtime.tta import get_policy

#: 32 MiB: a batch of a few dozen camera JPEGs or one 1920x1080 uint8 tensor sent as binary.
DEFAULT_MAX_BODY = 32 * 2**20
#: 25 MP per request (stricter than the runtime's per-image DEFAULT_MAX_PIXELS of 50 MP: a
#: server answers strangers): a 6000 x 4000 photo, or 500 frames of 224 x 224.
MAX_REQUEST_PIXELS = 25_000_000
#: 256 MiB held by all requests in flight (bodies + decoded frames and views): what a 1 GB
#: edge board can spare beside the model; 128 x 32 MiB bodies would otherwise be 4 GiB.
DEFAULT_MAX_INFLIGHT = 256 * 2**20
#: 8 MiB of JSON per request: enough for base64 images and small tensors; larger tensors
#: go as binary data (tritonclient's default).
DEFAULT_MAX_JSON = 8 * 2**20


@dataclass(frozen=True)
class ServeConfig:
    """How ``edgeinfer serve`` listens, runs the models and bounds each request.

    ``threads``: intra-op threads per model call (None: the runtime's default, at most 4).
    ``providers`` / ``allow_fallback``: as for the Predictor ("cpu", "cuda", "tensorrt").
    ``workers``: model calls that may run at once per model (each in its own thread).
    ``max_batch`` / ``batch_window_ms``: micro-batching; with ``max_batch > 1`` the frames
    of concurrent requests that arrive within the window are run in one backend call
    (frames of equal size only; others get their own call).
    ``max_queue``: requests admitted at once (reading, decoding, queued or running); the
    next one is answered 503 with ``Retry-After`` instead of waiting without bound.
    ``timeout_s``: per request, from admission to the response; a body that has not arrived
    by then is 408, a result that has not is 504. ``body_timeout_s``: the body must arrive
    within this (408 otherwise).
    ``max_inflight_bytes``: bytes all requests in flight may hold together (503 past it).
    ``max_connections``: uvicorn's ``limit_concurrency`` (503 past it, before any parsing).
    ``max_connections_per_client``: open connections one client address (an IPv6 /64) may
    hold; the next is answered 503 and closed at once (0: no cap, e.g. behind a reverse
    proxy, where every connection comes from the proxy's address).
    ``header_timeout_s``: a connection must deliver a complete request head within this of
    being accepted, and each later request within this of its first byte; 408 and closed
    otherwise (0: no deadline, uvicorn's behaviour).
    ``http``: ``"auto"`` (httptools + uvloop when installed, else h11) or ``"h11"``.
    ``monitor``: feed each model's field monitor (models whose artifact has a profile);
    its state is on ``/metrics`` and ``GET /v2/models/NAME/monitor``.
    """

    host: str = "127.0.0.1"
    port: int = 8000
    threads: int | None = None
    workers: int = 1
    max_batch: int = 1
    batch_window_ms: float = 2.0
    tta: str | None = None
    providers: str | None = None
    allow_fallback: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY
    max_pixels: int = MAX_REQUEST_PIXELS
    max_images: int = 64
    max_queue: int = 128
    max_connections: int = 256
    max_connections_per_client: int = 64
    header_timeout_s: float = 10.0
    max_inflight_bytes: int = DEFAULT_MAX_INFLIGHT
    max_json_bytes: int = DEFAULT_MAX_JSON
    timeout_s: float = 30.0
    body_timeout_s: float = 10.0
    retry_after_s: int = 1
    http: str = "auto"
    #: a field monitor per model whose artifact carries a reference profile (issue 27)
    monitor: bool = True
    default_top_k: int = 5
    decode_threads: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"host must be a non-empty string, got {self.host!r}")
        if isinstance(self.port, bool) or not isinstance(self.port, int) \
                or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be 0..65535 (0: any free port), got {self.port!r}")
        if self.threads is not None:
            positive_int("threads", self.threads)
        for name in ("workers", "max_batch", "max_body_bytes", "max_pixels", "max_images",
                     "max_queue", "retry_after_s", "default_top_k", "decode_threads",
                     "max_connections", "max_inflight_bytes", "max_json_bytes"):
            positive_int(name, getattr(self, name))
        v = self.max_connections_per_client
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError("max_connections_per_client must be an integer >= 0 (0: no cap), "
                              f"got {v!r}")
        for name in ("batch_window_ms", "timeout_s", "body_timeout_s", "header_timeout_s"):
            v = getattr(self, name)
            strict = name not in ("batch_window_ms", "header_timeout_s")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0 or (strict and v == 0):
                raise ConfigError(f"{name} must be a finite number "
                                  f"{'> 0' if strict else '>= 0'}, got {v!r}")
        if self.http not in ("auto", "h11"):
            raise ConfigError(f"http must be 'auto' (httptools + uvloop when installed) or "
                              f"'h11', got {self.http!r}")
        if self.max_inflight_bytes < self.max_body_bytes:
            raise ConfigError(f"max_inflight_bytes ({self.max_inflight_bytes}) must be at least "
                              f"max_body_bytes ({self.max_body_bytes}): a body at the limit "
                              "could never be accepted")
        get_policy(self.tta)  # ConfigError for an unknown policy

    @property
    def batching(self) -> bool:
        return self.max_batch > 1
