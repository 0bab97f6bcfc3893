"""``edgeinfer pack`` (workstation, framework installed) and ``edgeinfer verify`` (device, lean).

``verify`` exits 0 on PASS (and on NOT CERTIFIED unless ``--strict``), 1 when a figure is
out of tolerance (the line names it), 2 on bad input (a damaged or foreign pack, a pack
made for another model or spec, a missing file).
"""

from __future__ import annotations

import argparse
import sys

from edgeinfer.cli.common import DATA_HELP, EXIT_FAILED, SOURCE_HELP, positive, progress


def run_pack(args: argparse.Namespace) -> int:
    from edgeinfer.check.packer import build_pack
    from edgeinfer.parity.pack import write_pack

    pack = build_pack(args.source, args.data, spec=args.spec, weights=args.weights,
                      labels=args.labels, limit=args.limit, encoded=not args.no_encoded,
                      max_side=args.max_side, progress=progress)
    out = write_pack(pack, args.output)
    size = out.stat().st_size
    print(f"{out}: {pack.n} frames ({pack.data_name}), {len(pack.labels)} classes, "
          f"{'labelled' if pack.truth is not None else 'unlabelled'}, "
          f"{'with' if pack.encoded else 'without'} encoded files, {size / 1e6:.2f} MB")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from edgeinfer.check.verify import NOT_CERTIFIED, verify

    result = verify(args.artifact, args.pack, threads=args.threads,
                    latency_runs=args.latency_runs,
                    progress=None if args.quiet else progress)
    if args.json:
        from edgeinfer.check.verify_report import write_json

        write_json(result, args.json)
    if args.report:
        from edgeinfer.check.verify_report import write_report

        write_report(result, args.report, plots=not args.no_plots)
    if args.probs:
        import numpy as np

        np.save(args.probs, result.probs)
    from edgeinfer.check.verify_report import text_table

    if not args.quiet:
        print(text_table(result))
        lat = result.latency_ms
        print(f"latency ms p50/p90/p99 {lat['p50']:.2f}/{lat['p90']:.2f}/{lat['p99']:.2f}, "
              f"peak RSS {result.peak_rss_mb:.0f} MB, {result.machine['machine']} "
              f"({result.machine['target']})")
    for w in result.warnings:
        print(f"edgeinfer: warning: {w}", file=sys.stderr)
    print(result.message())
    if result.verdict == NOT_CERTIFIED and args.strict:
        return EXIT_FAILED
    return result.exit_code


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pack", help="run the framework on real frames and write a parity pack "
                       "for `edgeinfer verify` on a device")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--data", required=True, help=DATA_HELP)
    p.add_argument("-o", "--output", required=True, help="the pack file to write (model.pack)")
    p.add_argument("--spec", help="PreprocessSpec JSON file (bundled models have one)")
    p.add_argument("--weights", help="torch state dict (loaded with weights_only=True)")
    p.add_argument("--labels", help="class names, one per line")
    p.add_argument("--limit", type=positive, default=200,
                   help="at most this many frames, spread over the data (default 200)")
    p.add_argument("--max-side", type=positive,
                   help="downscale frames whose longer side is above this (smaller packs; "
                   "the framework runs on the downscaled frames)")
    p.add_argument("--no-encoded", action="store_true",
                   help="do not store the original encoded files (no decode check)")
    p.set_defaults(handler=run_pack)

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
