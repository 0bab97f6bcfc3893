"""``edgeinfer convert``: a trained model in, one parity-checked artifact out."""

from __future__ import annotations

import argparse
import json

from edgeinfer.cli.common import (
    DATA_HELP,
    SOURCE_HELP,
    add_skip_bad,
    batchnorm_summary,
    parse_size,
    positive,
    progress,
)


def run(args: argparse.Namespace) -> int:
    from edgeinfer.converter.api import convert

    frame_size = parse_size(args.frame_size, "--frame-size") if args.frame_size else None
    result = convert(args.source, args.output, weights=args.weights, spec=args.spec,
                     spec_from=args.spec_from,
                     labels=args.labels, format=args.format, quantize=args.quantize,
                     calibration=args.calibration, calibration_limit=args.calibration_limit,
                     per_channel=not args.per_tensor, target=args.target,
                     frame_size=frame_size,
                     parity_data=args.parity_data, parity_limit=args.parity_limit,
                     progress=progress, verbose=args.verbose,
                     accept_spec=args.accept_spec, strict=args.strict,
                     min_agreement=args.min_agreement, max_drop=args.max_drop,
                     max_float_layers=args.max_float_layers,
                     max_latency_ratio=args.max_latency_ratio, skip_bad=args.skip_bad,
                     audit_frames=args.audit_frames, fit=args.fit,
                     int8_method=args.int8_method)
    if args.json:
        print(json.dumps({"path": str(result.path), **result.metadata.to_dict()}, indent=2))
        return 0
    if result.metadata.task == "detect":  # boxes, not probabilities (issue 28)
        from edgeinfer.converter.detect_gate import parity_line

        print(f"{result.path}: {parity_line(result.metadata.parity).split(maxsplit=1)[1]}")
        return 0
    from edgeinfer.parity.stages import parity_figure

    p = result.metadata.parity
    print(f"{result.path}: {p['verdict']} on {p['n']} frames ({p['data']}): "
          f"{parity_figure(p)}, top-1 agreement {p['top1_agreement']:.2%}"
          + (f"; accuracy {p['accuracy_source']:.2%} -> {p['accuracy_artifact']:.2%}"
             if "accuracy_artifact" in p else "")
          + f"; {batchnorm_summary(result.metadata.provenance)}")
    from edgeinfer.converter.int8.targets import int8_summary

    for line in int8_summary(result.metadata.provenance):
        print(f"  {line}")
    if not p["certified"]:
        print(f"  {p['verdict']}: {p['certification']}")
    if p.get("data_note"):
        print(f"  {p['data_note']}: the gate proved the export, not the model on your "
              "images; pass --parity-data (and --strict to refuse without it)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("convert", help="convert a model to a parity-checked ONNX/TFLite artifact")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("-o", "--output", required=True,
                   help="artifact path; its extension must match --format (.onnx / .tflite)")
    p.add_argument("--format", choices=["onnx", "tflite"], default=None,
                   help="artifact format (default: from the output's extension, else onnx)")
    p.add_argument("--quantize", choices=["fp16", "int8"],
                   help="int8: ONNX QDQ or TFLite full-integer; fp16: TFLite only")
    p.add_argument("--calibration", help="int8 calibration frames: " + DATA_HELP)
    p.add_argument("--calibration-limit", type=positive, default=256,
                   help="at most this many calibration frames (default 256)")
    p.add_argument("--per-tensor", action="store_true",
                   help="int8: per-tensor weight scales (default per-channel)")
    p.add_argument("--int8-method", choices=["minmax", "adaround"],
                   help="int8 classifiers: how weights are rounded - adaround (the default: up "
                   "or down so each layer matches fp32 on the calibration frames; fitted in "
                   "torch: seconds on a small model, minutes on EfficientNet-Lite0; without "
                   "torch the default falls back to minmax and says so) or minmax (to "
                   "nearest, no fit); docs/int8/adaround.md. Detectors round to nearest and "
                   "refuse adaround")
    p.add_argument("--target", choices=["x86-avx2", "x86-vnni", "arm64", "auto"],
                   help="int8 ONNX: the CPU the artifact will run on (weight range, types); "
                   "auto = this machine; default x86-avx2 settings (safe on any CPU)")
    p.add_argument("--min-agreement", type=float, metavar="FRACTION",
                   help="int8: keep the fewest layers float until top-1 agreement with fp32 on "
                   "held-out parity frames reaches this (95%% lower bound), e.g. 0.99 "
                   "(needs >= 381 held-out frames); refused when unreachable")
    p.add_argument("--max-drop", type=float, metavar="FRACTION",
                   help="int8: the same control on labelled parity frames: accuracy may drop "
                   "at most this much vs fp32, e.g. 0.005")
    p.add_argument("--max-float-layers", type=positive, metavar="N",
                   help="int8 control: at most N layers kept float (default: any; each costs "
                   "speed and size)")
    p.add_argument("--max-latency-ratio", type=float, metavar="R",
                   help="int8 control: keep only as many layers float as stay within R x "
                   "fp32's 1-thread latency on this machine, e.g. 0.67 (refused when the "
                   "target needs more); alone, without a target: the most accurate int8 "
                   "within R is written and its agreement stated against the default 99%% "
                   "target (--strict refuses below it)")
    p.add_argument("--fit", choices=["letterbox", "stretch"],
                   help="detectors: how a frame is placed in the input (default: the "
                   "detector's detection.json); the spec audit refuses a fit the model's own "
                   "detections disprove unless --accept-spec")
    p.add_argument("--frame-size", help="TFLite input frame HxW, e.g. 480x640 (fixed size)")
    p.add_argument("--weights", help="torch state dict (loaded with weights_only=True)")
    p.add_argument("--spec", help="PreprocessSpec JSON file (bundled models have one), or "
                   "'auto': read it from the source (a model folder's preprocessor_config.json)")
    p.add_argument("--spec-from", metavar="SOURCE",
                   help="derive the spec from the training pipeline's config: a Hugging Face "
                   "preprocessor_config.json or model folder, a timm pretrained_cfg JSON, an "
                   "albumentations A.to_dict JSON (docs/spec_from.md)")
    p.add_argument("--labels", help="class names, one per line")
    p.add_argument("--parity-data", help="the images the artifact is gated on: " + DATA_HELP
                   + ". Without it a bundled model uses its own test set; your own model is "
                   "gated on bundled frames that resemble its input (Fashion-MNIST for small "
                   "gray models, photos otherwise) and the verdict says 'not your data'")
    p.add_argument("--parity-limit", type=positive, help="use at most this many parity frames")
    add_skip_bad(p)
    p.add_argument("--audit-frames", type=positive, default=64, metavar="N",
                   help="parity frames the spec audit uses, always the same ones (spread "
                   "over the data), so a rerun gives the same verdict (default 64)")
    p.add_argument("--json", action="store_true", help="print the artifact metadata as JSON")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show third-party exporter/quantiser output (hidden unless it fails)")
    p.add_argument("--accept-spec", action="store_true",
                   help="convert even when the spec audit finds the spec wrong")
    p.add_argument("--strict", action="store_true",
                   help="refuse on label-free spec-audit warnings too, and refuse (exit 2) "
                   "to gate your own model without --parity-data")
    p.set_defaults(handler=run)
