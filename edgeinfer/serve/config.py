"""The server's knobs and limits in one frozen object, validated once at start-up.

Why the defaults: a server on an edge box must survive a hostile or broken client without
running out of memory, so every resource a request can claim is bounded before it is
claimed — bytes (``max_body_bytes``, checked from Content-Length and again while the body
streams in), pixels (``max_pixels``, per request, read from the image headers before
anything is decoded), images per request (``max_images``), time (``timeout_s``) and
concurrency (``max_queue`` requests admitted at once; the next gets 503 + Retry-After).
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
    by then is 408, a result that has not is 504.
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
    timeout_s: float = 30.0
    retry_after_s: int = 1
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
                     "max_queue", "retry_after_s", "default_top_k", "decode_threads"):
            positive_int(name, getattr(self, name))
        for name in ("batch_window_ms", "timeout_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0 or (name == "timeout_s" and v == 0):
                raise ConfigError(f"{name} must be a finite number "
                                  f"{'> 0' if name == 'timeout_s' else '>= 0'}, got {v!r}")
        get_policy(self.tta)  # ConfigError for an unknown policy

    @property
    def batching(self) -> bool:
        return self.max_batch > 1
