"""``edgeinfer serve`` (HTTP, Open Inference Protocol), ``watch`` (camera/video stream) and
``export triton`` (a Triton model repository)."""

from __future__ import annotations

import argparse
import json

from edgeinfer.cli.common import positive, progress


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return v


def _pos_float(text: str) -> float:
    v = _nonneg_float(text)
    if v == 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return v


def run_serve(args: argparse.Namespace) -> int:
    from edgeinfer.serve.config import ServeConfig

    cfg = ServeConfig(host=args.host, port=args.port, threads=args.threads,
                      workers=args.workers, max_batch=args.max_batch,
                      batch_window_ms=args.batch_window_ms, tta=args.tta,
                      providers=args.provider, allow_fallback=args.allow_fallback,
                      max_body_bytes=int(args.max_body_mb * 2**20),
                      max_pixels=int(args.max_megapixels * 1e6), max_images=args.max_images,
                      max_queue=args.max_queue, timeout_s=args.timeout)
    from edgeinfer.serve.server import serve

    return serve(args.artifacts, cfg, log_level=args.log_level, access_log=args.access_log,
                 announce=progress)


def run_watch(args: argparse.Namespace) -> int:
    from edgeinfer.runtime.predictor import Predictor
    from edgeinfer.runtime.stream import Stream

    pred = Predictor(args.artifact, threads=args.threads, tta=args.tta)
    stream = Stream(pred, args.source, top_k=args.top_k, smoothing=args.smoothing,
                    realtime=args.realtime, max_frames=args.max_frames)
    progress(f"{args.source}: {'latest frame only' if stream.latest else 'every frame'}, "
             f"provider {pred.provider}")
    try:
        with stream:
            for r in stream:
                if args.json:
                    print(json.dumps({
                        "frame": r.frame_id, "timestamp": round(r.timestamp, 6),
                        "latency_ms": round(r.latency_ms, 3), "infer_ms": round(r.infer_ms, 3),
                        "dropped": r.dropped, "predictions": [
                            {"label": p.label, "index": p.index,
                             "probability": round(p.probability, 6)} for p in r.predictions]}),
                        flush=True)
                else:
                    top = r.predictions[0]
                    print(f"frame {r.frame_id:6d}  {r.latency_ms:7.2f} ms  dropped {r.dropped:5d}"
                          f"  {top.label} ({top.probability:.3f})", flush=True)
    except KeyboardInterrupt:
        pass  # Ctrl-C ends a camera stream: print the summary, exit 0
    s = stream.stats()
    p50 = f"{s.latency_p50_ms:.2f}" if s.latency_p50_ms is not None else "-"
    p99 = f"{s.latency_p99_ms:.2f}" if s.latency_p99_ms is not None else "-"
    progress(f"{s.processed} frames processed, {s.dropped} dropped, {s.read} read in "
             f"{s.seconds:.2f} s ({s.fps:.1f} fps); latency p50 {p50} ms, p99 {p99} ms")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from edgeinfer.serve.triton import export_triton

    out = export_triton(args.artifact, args.repo, name=args.name, max_batch=args.max_batch,
                        instances=args.instances, kind=args.kind,
                        queue_delay_us=args.queue_delay_us, overwrite=args.force)
    print(out.model_dir)
    progress(f"Triton model repository: {args.repo} (model {out.model_dir.name}, "
             f"max_batch_size {out.max_batch}); run: tritonserver --model-repository={args.repo}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="HTTP server: Open Inference Protocol (KServe v2), /predict, /metrics",
        description="Serve artifacts over HTTP until SIGTERM/SIGINT (then in-flight requests "
        "finish and the exit status is 0). Models are named by their file stem.")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help=".onnx or .tflite artifacts")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port)")
    p.add_argument("--threads", type=positive, help="intra-op threads per model call")
    p.add_argument("--workers", type=positive, default=1,
                   help="model calls that may run at once per model (default 1)")
    p.add_argument("--max-batch", type=positive, default=1,
                   help="micro-batching: frames of concurrent requests per model call")
    p.add_argument("--batch-window-ms", type=_nonneg_float, default=2.0,
                   help="how long a batch may wait for more requests (default 2 ms)")
    p.add_argument("--tta", choices=["none", "hflip", "hflip+crops"], default=None)
    p.add_argument("--provider", choices=["cpu", "cuda", "tensorrt"], default=None)
    p.add_argument("--allow-fallback", action="store_true",
                   help="fall back to CPU when the provider is missing (else exit 2)")
    p.add_argument("--max-body-mb", type=_pos_float, default=32.0, help="request body limit")
    p.add_argument("--max-megapixels", type=_pos_float, default=25.0,
                   help="decoded pixels per request (checked from image headers first)")
    p.add_argument("--max-images", type=positive, default=64, help="images per request")
    p.add_argument("--max-queue", type=positive, default=128,
                   help="requests in flight before 503 + Retry-After")
    p.add_argument("--timeout", type=_pos_float, default=30.0, help="seconds per request")
    p.add_argument("--log-level", default="warning",
                   choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--access-log", action="store_true", help="log every request")
    p.set_defaults(handler=run_serve)

    w = sub.add_parser(
        "watch", help="predictions on a camera, video file or stream URL (latest frame)",
        description="A camera or URL keeps only the newest frame (stale frames are dropped "
        "and counted); a file is read frame by frame unless --realtime replays it at its "
        "frame rate. A summary (processed, dropped, fps, latency) goes to stderr.")
    w.add_argument("artifact", help=".onnx or .tflite artifact")
    w.add_argument("source", help="camera index (0), video file, or URL (rtsp://...)")
    w.add_argument("--top-k", type=positive, default=1)
    w.add_argument("--smoothing", type=_pos_float,
                   help="EMA weight of the newest frame's probabilities, in (0, 1]")
    w.add_argument("--realtime", action="store_true",
                   help="replay a file at its frame rate, dropping frames the model misses")
    w.add_argument("--max-frames", type=positive, help="stop after this many frames")
    w.add_argument("--threads", type=positive)
    w.add_argument("--tta", choices=["none", "hflip", "hflip+crops"], default=None)
    w.add_argument("--json", action="store_true", help="one JSON object per frame")
    w.set_defaults(handler=run_watch)

    e = sub.add_parser("export", help="export an artifact for another serving engine")
    esub = e.add_subparsers(dest="target", required=True)
    t = esub.add_parser(
        "triton", help="a Triton Inference Server model repository",
        description="Writes REPO/NAME/config.pbtxt (onnxruntime backend, uint8 frame input "
        "with dynamic height/width, dynamic batching), REPO/NAME/labels.txt and "
        "REPO/NAME/1/model.onnx.")
    t.add_argument("artifact", help="an .onnx artifact")
    t.add_argument("repo", help="model repository folder (created if missing)")
    t.add_argument("--name", help="model name (default: the artifact's file stem)")
    t.add_argument("--max-batch", type=positive, default=8, help="Triton max_batch_size")
    t.add_argument("--instances", type=positive, default=1, help="model instances")
    t.add_argument("--kind", choices=["cpu", "gpu"], default="cpu", help="instance kind")
    t.add_argument("--queue-delay-us", type=int, default=500,
                   help="dynamic batcher: longest wait for a fuller batch, microseconds")
    t.add_argument("--force", action="store_true", help="overwrite an existing model")
    t.set_defaults(handler=run_export)


__all__ = ["register"]
