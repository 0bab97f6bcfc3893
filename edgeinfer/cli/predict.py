"""``edgeinfer predict``: top-k for images, a video file or a camera."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeinfer.cli.common import EXIT_USAGE, err, pos_float, positive, progress
from edgeinfer.data.frames import IMAGE_SUFFIXES
from edgeinfer.errors import ConfigError, EdgeInferError


def _print_predictions(name: str, preds, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"image": name, "predictions": [
            {"label": p.label, "index": p.index, "probability": round(p.probability, 6)}
            for p in preds]}))
    else:
        print(f"{name}: " + ", ".join(f"{p.label} ({p.probability:.3f})" for p in preds))


def expand(paths: list[str]) -> tuple[list[str], list[str]]:
    """(image files, folders without any): a folder stands for its images, sorted, its
    subfolders included (a labelled folder as convert/check/pack read it), so ``predict``
    takes what the other commands take."""
    files, empty = [], []
    for p in paths:
        if not Path(p).is_dir():
            files.append(p)
            continue
        found = sorted(str(f) for f in Path(p).rglob("*")
                       if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
        files += found
        if not found:
            empty.append(p)
    return files, empty


def run(args: argparse.Namespace) -> int:
    """Predict images (a bad one is reported in one line; the others still print) or a video."""
    from edgeinfer.cli import predict_detect
    from edgeinfer.runtime.predictor import Predictor

    if predict_detect.wants(args.artifact):  # boxes, not top-k (issue 28)
        images, empty = expand(args.images)
        for d in empty:
            err(f"{d}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
        return predict_detect.run(args, images, len(empty))
    if not args.images and args.video is None:
        raise ConfigError("give one or more IMAGE paths or --video FILE|DEVICE")
    pred = Predictor(args.artifact, threads=args.threads, tta=args.tta,
                     providers=args.provider, allow_fallback=args.allow_fallback,
                     max_pixels=int(args.max_megapixels * 1e6))
    progress(f"{args.artifact}: provider {pred.provider}, tta {pred.tta}")
    images, empty = expand(args.images)
    for d in empty:
        err(f"{d}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    failed = len(empty)
    if images:
        for name, item in zip(images, pred.predict_batch(images, top_k=args.top_k),
                              strict=True):
            if isinstance(item, EdgeInferError):
                err(f"{name}: {item}")
                failed += 1
            else:
                _print_predictions(name, item, args.json)
    if args.video is not None:
        from edgeinfer.runtime.video import predict_video

        for r in predict_video(pred, args.video, top_k=args.top_k, max_frames=args.max_frames):
            if args.json:
                print(json.dumps({"frame": r.index, "fps": round(r.fps, 2),
                                  "latency_ms": round(r.latency_ms, 3), "predictions": [
                                      {"label": p.label, "probability": round(p.probability, 6)}
                                      for p in r.predictions]}))
            else:
                top = r.predictions[0]
                print(f"frame {r.index:5d}  {r.fps:6.1f} fps  {r.latency_ms:6.2f} ms  "
                      f"{top.label} ({top.probability:.3f})")
    return EXIT_USAGE if failed else 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="top-k predictions for images or a video/camera",
                       description="Exit status: 0 all images predicted, 2 an image, the video "
                       "or the artifact was unusable (each bad image gets one line on stderr; "
                       "the others are still predicted; a video cut short prints its frames, "
                       "then one line).")
    p.add_argument("artifact", help=".onnx or .tflite artifact, or a bundled detector "
                   "(blazeface:short_range | full_range | back): boxes in image pixels")
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files or folders of images (options may follow them)")
    p.add_argument("--top-k", type=positive, default=5)
    p.add_argument("--tta", choices=["none", "hflip", "hflip+crops"], default=None)
    p.add_argument("--threads", type=positive, help="CPU threads (default: cores, at most 4)")
    p.add_argument("--provider", choices=["cpu", "cuda", "tensorrt"], default=None)
    p.add_argument("--allow-fallback", action="store_true",
                   help="fall back to CPU when the provider is missing (else exit 2)")
    p.add_argument("--video", metavar="FILE|DEVICE", help="a video file or camera index (a "
                   "detector prints each frame's boxes in frame pixels)")
    p.add_argument("--max-frames", type=positive, help="stop the video after this many frames")
    p.add_argument("--max-megapixels", type=pos_float, default=50.0,
                   help="largest image accepted, in megapixels (decompression-bomb guard, "
                   "checked from the header before decoding; default 50)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=run)
