"""The HTTP app (starlette): Open Inference Protocol routes, ``/predict``, ``/metrics``.

Request life cycle for the model routes: admission (503 + Retry-After when ``max_queue``
requests are already in flight, or while draining), then the body is read with a byte
limit (Content-Length first, then while it streams in) within ``body_timeout_s``, each
chunk charged to the server's in-flight byte budget (:mod:`~edgeinfer.serve.limits`; 503
+ Retry-After past it, as for decoded frames later), parsed and decoded in a small
thread pool (JSON and image decoding never block the event loop), run by the model's
:class:`~edgeinfer.serve.scheduler.Scheduler`, encoded and answered — all under one
per-request deadline. Every refusal is a JSON ``{"error": ..., "type": ...}`` with a 4xx
status naming the problem; a 5xx means the server itself failed (and is logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from edgeinfer.errors import (
    ConfigError,
    ImageError,
    ImageTooLargeError,
    ModelError,
    require,
)

require("starlette", "serve", "edgeinfer serve")
require("python_multipart", "serve", "edgeinfer serve (multipart uploads)")

from starlette.applications import Starlette  # noqa: E402 - after the extra check
from starlette.datastructures import Headers, UploadFile  # noqa: E402
from starlette.exceptions import HTTPException  # noqa: E402
from starlette.formparsers import MultiPartException, MultiPartParser  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from edgeinfer._version import __version__  # noqa: E402
from edgeinfer.serve.config import ServeConfig  # noqa: E402
from edgeinfer.serve.limits import ByteBudget, Charge  # noqa: E402
from edgeinfer.serve.metrics import Metrics  # noqa: E402
from edgeinfer.serve.models import ModelSet, ServedModel, check_abandoned  # noqa: E402
from edgeinfer.serve.protocol import (  # noqa: E402
    HEADER_LENGTH,
    InferRequest,
    RequestError,
    error_body,
    parse_uint,
)
from edgeinfer.serve.scheduler import Scheduler  # noqa: E402

log = logging.getLogger("edgeinfer.serve")
EXTENSIONS = ["classification", "binary_tensor_data"]
JSON_TYPES = ("", "application/json", "application/octet-stream")


@dataclass
class ServerState:
    """What the app and the uvicorn wrapper share: readiness, draining, the in-flight count."""

    ready: bool = False
    draining: bool = False
    in_flight: int = 0


@dataclass
class _Ctx:
    charge: Charge  # this request's share of the in-flight byte budget
    reading: bool = True  # still receiving the body (a timeout then is the client's: 408)
    abandoned: threading.Event = field(default_factory=threading.Event)  # set on timeout


Handler = Callable[[Request, _Ctx], Awaitable[Response]]


def create_app(models: ModelSet, cfg: ServeConfig | None = None) -> Starlette:
    """The ASGI app serving ``models``; run it with uvicorn (see :func:`serve.serve`)."""
    cfg = cfg or ServeConfig()
    state = ServerState()
    budget = ByteBudget(cfg.max_inflight_bytes)
    metrics = Metrics(lambda: budget.used)
    decode_pool = ThreadPoolExecutor(max_workers=cfg.decode_threads,
                                     thread_name_prefix="edgeinfer-decode")
    schedulers = {m.name: Scheduler(m.infer, m.name, workers=cfg.workers,
                                    max_batch=cfg.max_batch,
                                    window_s=cfg.batch_window_ms / 1e3,
                                    observe=metrics.observer(m.name)) for m in models}

    def error(status: int, message: str, kind: str, headers: dict[str, str] | None = None
              ) -> Response:
        metrics.errors.labels(kind).inc()
        return Response(error_body(message, kind), status, headers,
                        media_type="application/json")

    def model_or_404(name: str) -> ServedModel:
        m = models.get(name)
        if m is None:
            raise RequestError(f"unknown model {name[:80]!r}; this server has: "
                               f"{', '.join(models.names())}", 404)
        return m

    def guarded(route: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """Admission, deadline, error mapping and metrics around a model route."""

        async def endpoint(request: Request) -> Response:
            t0 = time.perf_counter()
            name = (request.path_params.get("name") or request.query_params.get("model")
                    or (models.names()[0] if len(models) == 1 else "-"))
            label = name if models.get(name) is not None else "-"
            if state.draining:
                resp = error(503, "the server is shutting down; retry on another replica",
                             "Draining", {"retry-after": str(cfg.retry_after_s),
                                          "connection": "close"})
            elif state.in_flight >= cfg.max_queue:
                resp = error(503, f"the server is at its limit of {cfg.max_queue} requests in "
                             "flight; retry shortly", "Overloaded",
                             {"retry-after": str(cfg.retry_after_s)})
            else:
                state.in_flight += 1
                metrics.in_flight.inc()
                ctx = _Ctx(Charge(budget))
                try:
                    resp = await asyncio.wait_for(handler(request, ctx), cfg.timeout_s)
                except TimeoutError:
                    ctx.abandoned.set()  # a job still queued or decoding stops early
                    if ctx.reading:
                        resp = error(408, f"the request body did not arrive within "
                                     f"{cfg.timeout_s:g} s", "RequestTimeout")
                    else:
                        resp = error(504, f"no result within {cfg.timeout_s:g} s; the server "
                                     "is busy or the request is too large",
                                     "Timeout", {"retry-after": str(cfg.retry_after_s)})
                except Exception as e:  # noqa: BLE001 - mapped to a status, never a crash
                    resp = _map_error(e, error, cfg.retry_after_s)
                finally:
                    ctx.charge.close()
                    state.in_flight -= 1
                    metrics.in_flight.dec()
            metrics.requests.labels(route, label, str(resp.status_code)).inc()
            metrics.latency.labels(route).observe(time.perf_counter() - t0)
            return resp

        return endpoint

    async def read_body(request: Request, ctx: _Ctx) -> bytes:
        limit = cfg.max_body_bytes
        enc = request.headers.get("content-encoding", "identity").strip().lower()
        if enc not in ("", "identity"):
            raise RequestError(f"Content-Encoding {enc[:30]!r} is not accepted: send the body "
                               "uncompressed", 415)
        length = request.headers.get("content-length")
        reserved = 0
        if length is not None:
            n = parse_uint(length, "Content-Length")
            if n > limit:
                raise RequestError(f"the body is {n} bytes, above the limit of {limit}", 413)
            # Reserved whole, before reading: charging chunk by chunk let 8 concurrent 3 MiB
            # uploads each take a share of a 16 MiB budget and then all fail with 503
            # (measured, tools/serve_memory.py); reserved up front, 5 pass and 3 get 503.
            ctx.charge.add(n, "the request body")
            reserved = n
        chunks, size = [], 0
        async with asyncio.timeout(cfg.body_timeout_s):  # TimeoutError: 408 (ctx.reading)
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestError(f"the body is more than {limit} bytes, the limit", 413)
                if size > reserved:  # chunked: charged as it arrives
                    ctx.charge.add(size - max(reserved, size - len(chunk)), "the request body")
                chunks.append(chunk)
        ctx.reading = False
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)  # the chunks die here

    # ------------------------------------------------------------------ model routes
    async def infer(request: Request, ctx: _Ctx) -> Response:
        m = model_or_404(request.path_params["name"])
        _check_version(request, m)
        ctype = _media_type(request.headers)
        if ctype not in JSON_TYPES and not ctype.endswith("+json"):
            raise RequestError(f"Content-Type {ctype[:40]!r} is not an inference request: send "
                               "JSON (optionally followed by binary tensor data); images go "
                               "to POST /predict", 415)
        body = await read_body(request, ctx)
        header_length = request.headers.get(HEADER_LENGTH)

        sched = schedulers[m.name]

        def prepare() -> tuple[InferRequest, list[np.ndarray]]:
            req = m.parse(body, header_length, cfg)
            return req, m.frames(req, cfg, ctx.abandoned, ctx.charge)

        if sched.batching:  # decode here, then join a batch
            req, probs = await sched.run_decoded(prepare, decode_pool)
            data, headers = m.encode(req, probs)
        else:  # one job in one worker thread: parse, decode, run, encode

            def job() -> tuple[bytes, dict[str, str]]:
                check_abandoned(ctx.abandoned)  # timed out while waiting for a worker
                req, frames = prepare()
                check_abandoned(ctx.abandoned)
                probs = sched.infer_now(frames)
                return m.encode(req, probs)

            data, headers = await sched.call(job)
        return Response(data, 200, headers)

    async def predict(request: Request, ctx: _Ctx) -> Response:
        name = request.query_params.get("model")
        if name is None:
            if len(models) != 1:
                raise RequestError(f"this server has several models: add ?model=NAME (one of "
                                   f"{', '.join(models.names())})")
            name = models.names()[0]
        m = model_or_404(name)
        top_k = _top_k(request.query_params.get("top_k"), cfg.default_top_k)
        ctype = _media_type(request.headers)
        body = await read_body(request, ctx)
        if ctype == "multipart/form-data":
            data = await _multipart_image(request.headers, body, cfg.max_body_bytes)
        elif ctype.startswith("text/") or "json" in ctype:
            raise RequestError(f"Content-Type {ctype[:40]!r}: POST the image bytes (image/jpeg, "
                               "image/png, application/octet-stream) or multipart/form-data "
                               "with one file; JSON requests go to /v2/models/NAME/infer", 415)
        else:  # raw bytes under any other type: curl --data-binary says form-urlencoded
            data = body
        if not data:  # said as /v2/.../infer says it, not as a decoder's "starts with b''"
            raise RequestError("the request body is empty: POST the image bytes (curl "
                               "--data-binary @photo.jpg) or multipart/form-data with one file")
        req = InferRequest(id=None, outputs=[], images=[data])
        sched = schedulers[m.name]
        if sched.batching:
            _, probs = await sched.run_decoded(
                lambda: (None, m.frames(req, cfg, ctx.abandoned, ctx.charge)), decode_pool)
            probs = probs[0]
        else:
            probs = (await sched.call(
                lambda: sched.infer_now(m.frames(req, cfg, ctx.abandoned, ctx.charge))))[0]
        return JSONResponse({"model": m.name} | m.simple(probs, top_k))

    # ------------------------------------------------------------------ cheap routes
    async def server_metadata(request: Request) -> Response:
        return JSONResponse({"name": "edgeinfer", "version": __version__,
                             "extensions": EXTENSIONS})

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        ok = state.ready and not state.draining
        return JSONResponse({"ready": ok}, 200 if ok else 503)

    def simple(fn: Callable[[ServedModel], Response]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                m = model_or_404(request.path_params["name"])
                _check_version(request, m)
            except RequestError as e:
                return error(e.status, str(e), type(e).__name__)
            return fn(m)

        return endpoint

    async def metrics_route(request: Request) -> Response:
        for m in models:
            if m.monitor is not None:
                metrics.set_monitor(m.name, m.monitor.report())
        return Response(metrics.render(), 200, media_type=metrics.content_type)

    def monitor_report(m: ServedModel) -> Response:
        if m.monitor is None:
            return error(404, f"model {m.name!r} has no field monitor: its artifact has no "
                         "reference profile (convert it again) or the server runs with "
                         "--no-monitor", "NoMonitor")
        return JSONResponse({"name": m.name} | m.monitor.report().to_dict())

    async def http_error(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 500)
        kind = {404: "NotFound", 405: "MethodNotAllowed"}.get(status, "HTTPError")
        msg = {404: f"no route {request.url.path[:100]!r}: see /v2, /v2/models/NAME, "
                    "/v2/models/NAME/infer, /predict, /metrics",
               405: f"{request.method} is not allowed on {request.url.path[:100]!r}"
               }.get(status, str(getattr(exc, "detail", "")))
        return error(status, msg, kind, getattr(exc, "headers", None))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for s in schedulers.values():
            await s.start()
        state.ready = True
        try:
            yield
        finally:
            state.ready = False
            for s in schedulers.values():
                await s.close()
            decode_pool.shutdown(wait=True)

    ready_ok = simple(lambda m: JSONResponse({"name": m.name, "ready": state.ready}))
    meta = simple(lambda m: JSONResponse(m.metadata()))
    config = simple(lambda m: JSONResponse(m.config(cfg.max_batch if cfg.batching else 0)))
    infer_ep = guarded("infer", infer)
    routes = [
        Route("/v2", server_metadata),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2/models/{name}", meta),
        Route("/v2/models/{name}/versions/{version}", meta),
        Route("/v2/models/{name}/ready", ready_ok),
        Route("/v2/models/{name}/versions/{version}/ready", ready_ok),
        Route("/v2/models/{name}/config", config),
        Route("/v2/models/{name}/versions/{version}/config", config),
        Route("/v2/models/{name}/infer", infer_ep, methods=["POST"]),
        Route("/v2/models/{name}/monitor", simple(monitor_report)),
        Route("/v2/models/{name}/versions/{version}/infer", infer_ep, methods=["POST"]),
        Route("/predict", guarded("predict", predict), methods=["POST"]),
        Route("/metrics", metrics_route),
    ]
    app = Starlette(routes=routes, lifespan=lifespan,
                    exception_handlers={HTTPException: http_error})
    app.state.server = state
    app.state.metrics = metrics
    app.state.budget = budget
    app.state.config = cfg
    return app


def _map_error(e: Exception, error: Callable[..., Response], retry_after_s: int) -> Response:
    kind = type(e).__name__
    if isinstance(e, RequestError):
        retry = {"retry-after": str(retry_after_s)} if e.status == 503 else None
        return error(e.status, str(e), kind, retry)
    if isinstance(e, ImageTooLargeError):
        return error(413, str(e), kind)
    if isinstance(e, (ImageError, ConfigError)):
        return error(400, str(e), kind)
    if isinstance(e, MultiPartException):
        return error(400, f"bad multipart body: {e.message}", "MultiPartError")
    if isinstance(e, ModelError):
        log.error("inference failed: %s", e)
        return error(500, f"inference failed: {e}", kind)
    log.exception("unexpected error")
    return error(500, f"internal error ({kind}); see the server log", "InternalError")


def _media_type(headers: Headers) -> str:
    return headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _check_version(request: Request, m: ServedModel) -> None:
    v = request.path_params.get("version")
    if v is not None and v != m.version:
        raise RequestError(f"model {m.name!r} has version {m.version!r} only, not {v[:20]!r}",
                           404)


def _top_k(text: str | None, default: int) -> int:
    if text is None:
        return default
    k = parse_uint(text, "top_k")
    if k < 1:
        raise RequestError(f"top_k must be a positive integer, got {text[:20]!r}")
    return k


async def _multipart_image(headers: Headers, body: bytes, limit: int) -> bytes:
    """The one file of a multipart/form-data body (the body is already size-checked)."""

    async def once() -> AsyncIterator[bytes]:
        yield body

    parser = MultiPartParser(headers, once(), max_files=1, max_fields=16, max_part_size=limit)
    form = await parser.parse()
    files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
    if len(files) != 1:
        raise RequestError("a multipart body must hold exactly one image file (e.g. field "
                           "'image')")
    try:
        return await files[0].read()
    finally:
        await form.close()
