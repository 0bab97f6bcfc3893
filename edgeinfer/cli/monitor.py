"""``edgeinfer monitor``: a deployed model's accuracy estimated without labels, and why."""

from __future__ import annotations

import argparse

from edgeinfer.cli.common import add_skip_bad, emit_json, positive, progress

DESCRIPTION = """\
Feeds SOURCE through the artifact and its field monitor: the accuracy estimated from the
model's confidence (calibrated on the labelled parity frames at convert time), drift of
each frame signal (brightness, contrast, saturation, warmth, sharpness, noise, size,
aspect), of the confidence and of the predicted-class mix, a CUSUM alarm when the
estimated accuracy falls (about 1% false alarms per 10,000 healthy frames), and the likely
cause, quoting the model's own robustness curve where convert measured it.
SOURCE: an image folder, a video file, a camera index, an rtsp/http URL, or a CSV of the
device's probabilities (one column per class: the labels or p0..pK-1).
Exit status: 0 healthy, 1 alarm, 2 bad input."""


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
    m.add_argument("--window", type=positive, default=300,
                   help="frames the estimate and the drift are read over (default 300)")
    m.add_argument("--max-frames", type=positive, help="stop after this many frames")
    m.add_argument("--threads", type=positive)
    m.add_argument("--progress-every", type=positive, default=500, metavar="N",
                   help="a status line every N frames (default 500)")
    m.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT ('-' = "
                   "stdout): estimated_accuracy, interval, reference_accuracy, alarm, drift, "
                   "cause, timeline")
    m.add_argument("--report", metavar="DIR", help="write report.md, report.json and "
                   "timeline.png to DIR")
    add_skip_bad(m)
    m.set_defaults(handler=run_monitor_cmd)
