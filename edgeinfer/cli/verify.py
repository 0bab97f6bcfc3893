"""``edgeinfer verify`` (device, lean install): check an artifact against a parity pack.

Exits 0 on PASS (and on NOT CERTIFIED unless ``--strict``), 1 when a figure is out of
tolerance (the line names it), 2 on bad input (a damaged or foreign pack, a pack made for
another model or spec, a missing file).
"""

from __future__ import annotations

import argparse
import sys

from edgeinfer.cli.common import EXIT_FAILED, positive, progress


def run_verify(args: argparse.Namespace) -> int:
    from edgeinfer.runtime.detect import is_detector

    if is_detector(args.artifact):  # issue 28: judged on detections
        return _detector(args)
    from edgeinfer.check.verify.run import NOT_CERTIFIED, verify

    result = verify(args.artifact, args.pack, threads=args.threads,
                    latency_runs=args.latency_runs,
                    progress=None if args.quiet else progress)
    if args.json:
        from edgeinfer.check.report_files import write_json

        write_json(result.to_dict(), args.json)
    if args.report:
        from edgeinfer.check.verify.report import write_report

        write_report(result, args.report, plots=not args.no_plots)
    if args.probs:
        import numpy as np

        np.save(args.probs, result.probs)
    from edgeinfer.check.verify.report import text_table

    if not args.quiet:
        print(text_table(result))
        lat = result.latency_ms
        print(f"latency ms p50/p90/p99 {lat['p50']:.2f}/{lat['p90']:.2f}/{lat['p99']:.2f}, "
              f"peak RSS {result.peak_rss_mb:.0f} MB, {result.machine['machine']} "
              f"({result.machine['target']})")
        for n in result.notes:
            print(f"int8: {n}")
    for w in result.warnings:
        print(f"edgeinfer: warning: {w}", file=sys.stderr)
    print(result.message())
    if result.verdict == NOT_CERTIFIED and args.strict:
        return EXIT_FAILED
    return result.exit_code


def _detector(args: argparse.Namespace) -> int:
    """A detector artifact against a detector pack (check/verify/detect.py)."""
    from edgeinfer.check.verify.detect import NOT_CERTIFIED, verify_detector
    from edgeinfer.errors import ConfigError

    if args.report or args.probs:
        raise ConfigError("--report and --probs are for classifiers; --json writes a "
                          "detector's figures")
    result = verify_detector(args.artifact, args.pack, threads=args.threads,
                             latency_runs=args.latency_runs,
                             progress=None if args.quiet else progress)
    if args.json:
        from edgeinfer.check.report_files import write_json

        write_json(result.to_dict(), args.json)
    if not args.quiet:
        print(result.table())
        lat = result.latency_ms
        print(f"frame -> boxes ms p50/p90/p99 {lat['p50']:.2f}/{lat['p90']:.2f}/"
              f"{lat['p99']:.2f}, {result.machine['machine']} ({result.machine['target']})")
    for n in result.notes:
        print(f"edgeinfer: note: {n}", file=sys.stderr)
    print(result.message())
    if result.verdict == NOT_CERTIFIED and args.strict:
        return EXIT_FAILED
    return result.exit_code


def register(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("verify", help="check an artifact against a parity pack on this machine "
                       "(lean install: no framework needed)")
    v.add_argument("artifact", help="an .onnx or .tflite artifact")
    v.add_argument("pack", help="a parity pack made by `edgeinfer pack`")
    v.add_argument("--threads", type=positive, help="CPU threads (default: up to 4)")
    v.add_argument("--json", help="write the full result as JSON to this file")
    v.add_argument("--report", help="write verify.json, verify.md and verify.png here")
    v.add_argument("--probs", help="save the artifact's probabilities (.npy) for comparisons")
    v.add_argument("--latency-runs", type=positive, default=50,
                   help="batch-1 calls timed for p50/p90/p99 (default 50)")
    v.add_argument("--strict", action="store_true",
                   help="exit 1 when too few frames certify the agreement bound")
    v.add_argument("--no-plots", action="store_true", help="skip the PNG plot")
    v.add_argument("-q", "--quiet", action="store_true", help="print only the verdict line")
    v.set_defaults(handler=run_verify)
