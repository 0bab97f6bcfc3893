"""``edgeinfer monitor``: a deployed model's accuracy estimated without labels, and why."""

from __future__ import annotations

import argparse

from edgeinfer.cli.common import add_skip_bad, emit_json, positive, progress

DESCRIPTION = """\
Feeds SOURCE through the artifact and its field monitor, without labels: the accuracy
estimated from the model's confidence (calibrated on the labelled parity frames at convert
time) with a 95% interval; drift of each frame signal (brightness, contrast, saturation,
warmth, sharpness, noise, size, aspect), of the model's feature moments (ONNX fp32), of
its confidence and of its predicted-class mix; a CUSUM alarm when the estimated accuracy
falls (tuned for a 1% chance of a false alarm in 10,000 healthy frames); and the likely
cause, quoting the model's own robustness curve where convert measured it.

SOURCE: an image folder (in name order), a video file, a camera index, an rtsp/http URL,
or a CSV of the device's probabilities (one column per class, named by the labels or
p0..pK-1; other columns ignored). A CSV carries no frames: only the confidence, the class
mix and the accuracy estimate are watched, so a cause is named from those alone.

Example:
  edgeinfer monitor fashion.onnx field_frames/ --report monitor_report
  monitor: 2000 frames, estimated 71.2% [68.9, 73.4] (reference 91.8%): ALARM - frames
  2.1 sigma darker than the parity data; darkness alone costs 15 points in the robustness
  curve

Exit status: 0 healthy, 1 alarm, 2 bad input (one line on stderr)."""


def run_monitor_cmd(args: argparse.Namespace) -> int:
    from edgeinfer.check.monitor.report import to_json, write_report
    from edgeinfer.check.monitor.run import run_monitor

    run = run_monitor(args.artifact, args.source, reference=args.reference,
                      window=args.window, max_frames=args.max_frames, skip_bad=args.skip_bad,
                      threads=args.threads, every=args.progress_every, say=progress)
    for s in run.skipped:
        progress(f"skipped (--skip-bad): {s}")
    print(run.report.summary())
    emit_json(to_json(run), args.json)
    if args.report:
        for path in write_report(run, args.report):
            progress(f"wrote {path}")
    return 1 if run.report.alarm else 0


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("monitor", help="estimate a deployed model's accuracy without labels, "
                       "raise an alarm on a drop and name its likely cause",
                       description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    m.add_argument("artifact", help=".onnx or .tflite artifact (with a monitor profile, or "
                   "give --reference)")
    m.add_argument("source", help="image folder, video file, camera index, URL, or "
                   "probabilities CSV")
    m.add_argument("--reference", metavar="DIR", help="labelled frames of the training "
                   "domain (class folders or image,label CSV): build the profile from them "
                   "instead of the artifact's")
    m.add_argument("--window", type=positive, default=300, metavar="N",
                   help="frames the estimate and the drift are read over (default 300)")
    m.add_argument("--max-frames", type=positive, metavar="N",
                   help="stop after this many frames (a camera or stream runs until then)")
    m.add_argument("--threads", type=positive, metavar="N",
                   help="inference threads (default: the runtime's)")
    m.add_argument("--progress-every", type=positive, default=500, metavar="N",
                   help="a status line every N frames (default 500)")
    m.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT ('-' = "
                   "stdout): estimated_accuracy, interval, reference_accuracy, alarm, drift, "
                   "cause, timeline")
    m.add_argument("--report", metavar="DIR", help="write report.md, report.json and "
                   "timeline.png to DIR")
    add_skip_bad(m)
    m.set_defaults(handler=run_monitor_cmd)
