"""``edgeinfer serve``: HTTP, Open Inference Protocol (KServe v2), /predict, /metrics."""

from __future__ import annotations

import argparse

from edgeinfer.cli.common import nonneg_float, pos_float, positive, progress


def run_serve(args: argparse.Namespace) -> int:
    from edgeinfer.serve.config import ServeConfig

    cfg = ServeConfig(host=args.host, port=args.port, threads=args.threads,
                      monitor=not args.no_monitor,
                      workers=args.workers, max_batch=args.max_batch,
                      batch_window_ms=args.batch_window_ms, tta=args.tta,
                      providers=args.provider, allow_fallback=args.allow_fallback,
                      max_body_bytes=int(args.max_body_mb * 2**20),
                      max_pixels=int(args.max_megapixels * 1e6), max_images=args.max_images,
                      max_queue=args.max_queue, timeout_s=args.timeout,
                      max_connections=args.max_connections,
                      max_connections_per_client=args.max_connections_per_client,
                      header_timeout_s=args.header_timeout,
                      max_inflight_bytes=int(args.max_inflight_mb * 2**20),
                      max_json_bytes=int(args.max_json_mb * 2**20),
                      body_timeout_s=args.body_timeout, http=args.http)
    if args.ray:
        from edgeinfer.serve.ray_serve import serve_ray

        return serve_ray(args.artifacts, cfg, args.replicas, address=args.ray_address,
                         announce=progress, insecure=args.ray_insecure)
    from edgeinfer.serve.server import serve

    return serve(args.artifacts, cfg, log_level=args.log_level, access_log=args.access_log,
                 announce=progress)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="HTTP server: Open Inference Protocol (KServe v2), /predict, /metrics",
        description="Serve artifacts over HTTP until SIGTERM/SIGINT (then in-flight requests "
        "finish and the exit status is 0). Models are named by their file stem.")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT",
                   help=".onnx or .tflite artifacts, or blazeface:VARIANT (a detector: OIP "
                   "outputs boxes, scores, classes, keypoints)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    p.add_argument("--threads", type=positive, help="intra-op threads per model call")
    p.add_argument("--workers", type=positive, default=1,
                   help="model calls that may run at once per model (default 1)")
    p.add_argument("--max-batch", type=positive, default=1,
                   help="micro-batching: frames of concurrent requests per model call")
    p.add_argument("--batch-window-ms", type=nonneg_float, default=2.0,
                   help="how long a batch may wait for more requests (default 2 ms)")
    p.add_argument("--tta", choices=["none", "hflip", "hflip+crops"], default=None)
    p.add_argument("--provider", choices=["cpu", "cuda", "tensorrt"], default=None)
    p.add_argument("--allow-fallback", action="store_true",
                   help="fall back to CPU when the provider is missing (else exit 2)")
    p.add_argument("--max-body-mb", type=pos_float, default=32.0, help="request body limit")
    p.add_argument("--max-megapixels", type=pos_float, default=25.0,
                   help="decoded pixels per request (checked from image headers first)")
    p.add_argument("--max-images", type=positive, default=64, help="images per request")
    p.add_argument("--max-queue", type=positive, default=128,
                   help="requests in flight before 503 + Retry-After")
    p.add_argument("--timeout", type=pos_float, default=30.0, help="seconds per request")
    p.add_argument("--body-timeout", type=pos_float, default=10.0,
                   help="seconds for a request body to arrive (slow uploads get 408)")
    p.add_argument("--max-connections", type=positive, default=256,
                   help="open connections before 503 (uvicorn limit_concurrency)")
    p.add_argument("--max-connections-per-client", type=int, default=64, metavar="N",
                   help="open connections one client address (IPv6: its /64) may hold; the "
                   "next is answered 503 and closed (default 64; 0: no cap, e.g. behind a "
                   "reverse proxy)")
    p.add_argument("--header-timeout", type=nonneg_float, default=10.0, metavar="S",
                   help="seconds for a connection to send a complete request head (each "
                   "request on a keep-alive connection: from its first byte); 408 and "
                   "closed past it (default 10; 0: none)")
    p.add_argument("--max-inflight-mb", type=pos_float, default=256.0,
                   help="memory all requests in flight may hold (bodies + decoded frames); "
                   "503 + Retry-After past it")
    p.add_argument("--max-json-mb", type=pos_float, default=8.0,
                   help="JSON part of a request (send large tensors as binary data)")
    p.add_argument("--http", choices=["auto", "h11"], default="auto",
                   help="HTTP parser: auto (httptools + uvloop when installed) or h11")
    p.add_argument("--ray", action="store_true",
                   help="serve on Ray Serve (the 'ray' extra): the same routes, N replicas")
    p.add_argument("--replicas", type=positive, default=1, help="Ray Serve replicas (with --ray)")
    p.add_argument("--ray-address", default=None,
                   help="an existing Ray cluster, with Ray's mutual TLS (RAY_USE_TLS and "
                   "certificates from edgeinfer ray-certs; default: start one on 127.0.0.1, "
                   "with TLS on certificates made for it)")
    p.add_argument("--ray-insecure", action="store_true",
                   help="allow --ray-address to join a cluster without TLS (a trusted network)")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.add_argument("--no-monitor", action="store_true",
                   help="no field monitor (default: one per model whose artifact has a "
                   "reference profile; GET /v2/models/NAME/monitor and monitor gauges)")
    p.set_defaults(handler=run_serve)
