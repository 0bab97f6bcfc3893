"""``edgeinfer watch``: predictions on a camera, video file or stream URL (latest frame)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeinfer.cli.common import pos_float, positive, progress


def run_watch(args: argparse.Namespace) -> int:
    from edgeinfer.runtime.detect import is_detector

    if is_detector(args.artifact):  # blazeface:VARIANT: boxes (cli/watch_detect.py)
        from edgeinfer.cli import watch_detect

        return watch_detect.run(args)
    from edgeinfer.runtime.predictor import Predictor
    from edgeinfer.runtime.stream import Stream

    pred = Predictor(args.artifact, threads=args.threads, tta=args.tta,
                     monitor=True if args.monitor else None)
    overlay = Path(args.overlay) if args.overlay else None
    if overlay:
        overlay.mkdir(parents=True, exist_ok=True)
    report = None
    stream = Stream(pred, args.source, top_k=args.top_k, smoothing=args.smoothing,
                    realtime=args.realtime, max_frames=args.max_frames)
    progress(f"{args.source}: {'latest frame only' if stream.latest else 'every frame'}, "
             f"provider {pred.provider}")
    try:
        with stream:
            for r in stream:
                if args.json:
                    line = {
                        "frame": r.frame_id, "timestamp": round(r.timestamp, 6),
                        "latency_ms": round(r.latency_ms, 3), "infer_ms": round(r.infer_ms, 3),
                        "dropped": r.dropped, "predictions": [
                            {"label": p.label, "index": p.index,
                             "probability": round(p.probability, 6)} for p in r.predictions]}
                    if r.alarm is not None:
                        line["monitor_alarm"] = r.alarm
                    print(json.dumps(line), flush=True)
                else:
                    top = r.predictions[0]
                    print(f"frame {r.frame_id:6d}  {r.latency_ms:7.2f} ms  dropped {r.dropped:5d}"
                          f"  {top.label} ({top.probability:.3f})", flush=True)
                n = r.frame_id + 1
                if pred.monitor is not None and n % args.monitor_every == 0:
                    report = pred.monitor.report()
                    progress(report.summary())
                if overlay is not None and n % args.overlay_every == 0 and r.frame is not None:
                    import cv2

                    from edgeinfer.runtime.overlay import draw

                    top = r.predictions[0]
                    cv2.imwrite(str(overlay / f"frame_{r.frame_id:06d}.png"),
                                draw(r.frame, top.label, top.probability, report))
    except KeyboardInterrupt:
        pass  # Ctrl-C ends a camera stream: print the summary, exit 0
    progress(stream.stats().summary())
    if pred.monitor is not None:
        progress(pred.monitor.report().summary())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    w = sub.add_parser(
        "watch", help="predictions on a camera, video file or stream URL (latest frame)",
        description="A camera or URL keeps only the newest frame (stale frames are dropped "
        "and counted); a file is read frame by frame unless --realtime replays it at its "
        "frame rate. A summary (processed, dropped, fps, latency) goes to stderr.")
    w.add_argument("artifact", help=".onnx or .tflite artifact, or blazeface:VARIANT (a "
                   "detector: boxes printed, and drawn with --overlay)")
    w.add_argument("source", help="camera index (0), video file, or URL (rtsp://...)")
    w.add_argument("--top-k", type=positive, default=1)
    w.add_argument("--smoothing", type=pos_float,
                   help="EMA weight of the newest frame's probabilities, in (0, 1]")
    w.add_argument("--realtime", action="store_true",
                   help="replay a file at its frame rate, dropping frames the model misses")
    w.add_argument("--max-frames", type=positive, help="stop after this many frames")
    w.add_argument("--threads", type=positive)
    w.add_argument("--tta", choices=["none", "hflip", "hflip+crops"], default=None)
    w.add_argument("--json", action="store_true", help="one JSON object per frame")
    w.add_argument("--monitor", action="store_true",
                   help="run the field monitor on the artifact's reference profile: its "
                   "line (estimated accuracy, alarm, cause) every --monitor-every frames")
    w.add_argument("--monitor-every", type=positive, default=300, metavar="N")
    w.add_argument("--overlay", metavar="DIR", help="write annotated frames (prediction, "
                   "and the monitor's state with --monitor) as PNGs to DIR")
    w.add_argument("--overlay-every", type=positive, default=30, metavar="N",
                   help="one annotated frame in N (default 30)")
    w.set_defaults(handler=run_watch)

