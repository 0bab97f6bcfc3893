"""``edgeinfer bench``: latency, start-up and memory, side by side with the baselines."""

from __future__ import annotations

import argparse

from edgeinfer.cli.common import progress
from edgeinfer.errors import ConfigError


def run(args: argparse.Namespace) -> int:
    from edgeinfer.check.bench import run_bench
    from edgeinfer.check.bench_report import latency_table, targets_table, write_json, write_report

    try:
        threads = [int(t) for t in args.threads.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--threads {args.threads!r} must look like 1,2") from None
    result = run_bench(args.artifacts, threads=threads, runs=args.runs, image=args.image,
                       warmup=args.warmup, torch_baseline=not args.no_torch,
                       tta=not args.no_tta, cold_repeats=args.cold_repeats,
                       progress=None if args.quiet else progress)
    print(latency_table(result))
    print()
    print(targets_table(result))
    if args.json:
        progress(f"wrote {write_json(result, args.json)}")
    if args.report:
        files = write_report(result, args.report)
        progress(f"wrote {len(files)} report files to {args.report}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(handler=run)
