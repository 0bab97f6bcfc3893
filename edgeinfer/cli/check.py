"""``edgeinfer check``: the parity ladder, source vs every artifact on the same frames."""

from __future__ import annotations

import argparse

from edgeinfer.cli.common import (
    DATA_HELP,
    EXIT_FAILED,
    SOURCE_HELP,
    add_skip_bad,
    positive,
    progress,
)


def run(args: argparse.Namespace) -> int:
    from edgeinfer.runtime.detect import is_detector

    if any(is_detector(a) for a in args.artifacts):  # issue 28: judged on detections
        return _detector(args)
    from edgeinfer.check.ladder.report import write_report
    from edgeinfer.check.ladder.run import run_ladder
    from edgeinfer.check.report_files import write_json
    from edgeinfer.progress import Reporter

    result = run_ladder(args.source, args.artifacts, args.data, weights=args.weights,
                        spec=args.spec, limit=args.limit, diagnose=args.diagnose,
                        threads=args.threads, timing=not args.no_timing,
                        skip_bad=args.skip_bad,
                        progress=None if args.quiet else Reporter())
    print(result.table())
    for s in result.steps:
        if s.diagnosis is not None:
            print(f"{s.name}: {s.diagnosis.message}")
    print(result.verdict())
    if args.json:
        progress(f"wrote {write_json(result.to_dict(), args.json)}")
    if args.report:
        files = write_report(result, args.report)
        progress(f"wrote {len(files)} report files to {args.report}")
    if not result.passed or (args.strict and result.word != "PASS"):
        return EXIT_FAILED
    return 0


def _detector(args: argparse.Namespace) -> int:
    """A detector's ladder (check/ladder/detect.py): exit 1 on FAIL, as the classifier's."""
    from edgeinfer.check.ladder.detect import run_detect_ladder
    from edgeinfer.check.report_files import write_json
    from edgeinfer.errors import ConfigError
    from edgeinfer.progress import Reporter

    if args.report or args.spec or args.diagnose == "always":
        raise ConfigError("--report, --spec and --diagnose are for classifiers; a detector "
                          "carries its spec, and --json writes its figures")
    result = run_detect_ladder(args.source, args.artifacts, args.data, weights=args.weights,
                               limit=args.limit, progress=None if args.quiet else Reporter())
    print(result.table())
    print(result.verdict())
    if args.json:
        progress(f"wrote {write_json(result.to_dict(), args.json)}")
    if not result.passed or (args.strict and result.word != "PASS"):
        return EXIT_FAILED
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check", help="parity ladder: source vs every artifact on the same real frames",
        description="Run the source model (eval mode) and every artifact on the same raw "
        "frames and judge each step (source -> onnx fp32 -> onnx int8 -> tflite ...) "
        "against the tolerance registry. Verdicts: PASS, NOT CERTIFIED (within tolerance, "
        "but too few frames to certify a statistical bound such as int8's 99%% agreement: "
        "the line says how many would), FAIL. Exit status: 0 PASS or NOT CERTIFIED, 1 a "
        "step fails (the first failing step is named; NOT CERTIFIED too with --strict), 2 "
        "bad input or usage. Detector artifacts are judged on their detections as convert's "
        "gate judges them (F1, box error in pixels, score error; --data builtin:detect is "
        "the gate's frames, or a folder of photos).")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT", help=".onnx / .tflite artifacts")
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("--limit", type=positive, help="use at most this many frames")
    add_skip_bad(p)
    p.add_argument("--weights", help="torch state dict for a factory source")
    p.add_argument("--spec", help="PreprocessSpec JSON (default: the first artifact's)")
    p.add_argument("--json", metavar="OUT", help="write the full result as JSON")
    p.add_argument("--report", metavar="DIR", help="write report.json, report.md and PNG plots")
    p.add_argument("--diagnose", choices=["auto", "always", "never"], default="auto",
                   help="per-layer int8 diagnosis: auto = when an int8 ONNX step fails")
    p.add_argument("--threads", type=positive, help="intra-op threads for the artifacts")
    p.add_argument("--no-timing", action="store_true", help="skip the latency measurement")
    p.add_argument("--strict", action="store_true",
                   help="exit 1 when too few frames certify the agreement bound")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(handler=run)
