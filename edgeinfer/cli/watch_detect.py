"""``edgeinfer watch`` for a detector (``blazeface:VARIANT``): boxes per frame, drawn on the
frame with ``--overlay DIR``. The classifier path of ``watch`` is untouched."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeinfer.cli.common import progress
from edgeinfer.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    from edgeinfer.runtime.detect.loader import open_detector
    from edgeinfer.runtime.detect.stream import DetectionStream

    if args.monitor or args.tta or args.smoothing is not None or args.top_k != 1:
        raise ConfigError("--monitor, --tta, --smoothing and --top-k are for classifiers; a "
                          "detector's watch prints and draws its boxes")
    det = open_detector(args.artifact, threads=args.threads)
    overlay = Path(args.overlay) if args.overlay else None
    if overlay:
        overlay.mkdir(parents=True, exist_ok=True)
    stream = DetectionStream(det, args.source, realtime=args.realtime,
                             max_frames=args.max_frames)
    progress(f"{args.source}: {'latest frame only' if stream.latest else 'every frame'}, "
             f"{args.artifact} ({det.task.describe()})")
    try:
        with stream:
            for r in stream:
                if args.json:
                    print(json.dumps({
                        "frame": r.frame_id, "timestamp": round(r.timestamp, 6),
                        "latency_ms": round(r.latency_ms, 3), "infer_ms": round(r.infer_ms, 3),
                        "dropped": r.dropped,
                        "detections": [d.to_dict() for d in r.detections]}), flush=True)
                else:
                    found = ", ".join(f"{d.label} ({d.score:.3f}) at "
                                      f"{', '.join(f'{v:.0f}' for v in d.box)}"
                                      for d in r.detections) or "nothing found"
                    print(f"frame {r.frame_id:6d}  {r.latency_ms:7.2f} ms  dropped "
                          f"{r.dropped:5d}  {found}", flush=True)
                if overlay is not None and (r.frame_id + 1) % args.overlay_every == 0:
                    import cv2

                    from edgeinfer.runtime.overlay import draw_boxes

                    n = len(r.detections)
                    title = (f"{n} {det.labels[0] if len(det.labels) == 1 else 'object'}"
                             f"{'s' if n != 1 else ''}, {r.infer_ms:.1f} ms")
                    cv2.imwrite(str(overlay / f"frame_{r.frame_id:06d}.png"),
                                draw_boxes(r.frame, r.detections, title))
    except KeyboardInterrupt:
        pass  # Ctrl-C ends a camera stream: print the summary, exit 0
    progress(stream.stats().summary())
    return 0
