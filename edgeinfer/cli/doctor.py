"""``edgeinfer doctor``: why is my device worse? Exit status 0 = the device agrees with the
reference / no culprit in the what-if audit, 1 = a culprit was found or the device disagrees
beyond sampling noise with nothing to explain it (``unexplained``), 2 = bad input (also a
device CSV none of whose rows names an image of ``--data``)."""

from __future__ import annotations

import argparse

from edgeinfer.cli.common import EXIT_FAILED, add_source_args, emit_json, progress
from edgeinfer.errors import ConfigError


def run_doctor_cmd(args: argparse.Namespace) -> int:
    from edgeinfer.check.doctor.detect import is_detector_source

    if is_detector_source(args.source):  # issue 28: the fit and pixels of a detector
        return _detector(args)
    from edgeinfer.check.doctor.report import summary, write_report
    from edgeinfer.check.doctor.run import run_doctor

    culprits = args.culprits.split(",") if args.culprits is not None else None
    res = run_doctor(args.source, args.data, spec=args.spec, weights=args.weights,
                     labels=args.labels, device_predictions=args.device_predictions,
                     limit=args.limit, shift=args.shift, progress=progress,
                     culprits=culprits, batches=_batch_sizes(args.batch_sizes))
    print(summary(res))
    if res.robustness is not None:
        from edgeinfer.check.doctor.robustness import markdown

        print(markdown(res.robustness, {}))
    emit_json(res.to_dict(), args.json)
    if args.report:
        for f in write_report(res, args.report):
            progress(f"wrote {f}")
    return EXIT_FAILED if res.top != "none" else 0


def _detector(args: argparse.Namespace) -> int:
    """A detector's audit: exit 1 when a culprit is named, 0 for a pass or 'does not
    know' (the figures per hypothesis are printed either way)."""
    from edgeinfer.check.doctor.detect import run_detect_doctor, summary

    res, about = run_detect_doctor(args.source, args.data, limit=args.limit,
                                   weights=args.weights, progress=progress)
    print(summary(res, about))
    emit_json(about | res.to_dict(), args.json)
    return EXIT_FAILED if res.verdict == "refuse" else 0


def _batch_sizes(text: str | None) -> list[int] | None:
    """``--batch-sizes 1,8`` -> [1, 8]; anything else is one line and exit 2 (ConfigError)."""
    if text is None:
        return None
    try:
        sizes = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise ConfigError(f"--batch-sizes {text!r} must be positive integers separated by "
                          "commas, e.g. 1,8")
    return sizes


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("doctor", help="rank the culprits of a device's accuracy drop "
                       "(exit 1 when the top culprit is not 'none', 'unexplained' included); "
                       "for a detector (source, artifact or blazeface:VARIANT) audit its fit "
                       "and pixels (--data builtin:detect: frames with true boxes)")
    add_source_args(d)
    d.add_argument("--device-predictions", metavar="CSV",
                   help="what the device predicted: CSV with header image,prediction (image "
                   "relative to --data; prediction a class index or label)")
    d.add_argument("--report", metavar="DIR", help="write doctor.json, doctor.md and PNGs")
    d.add_argument("--culprits", metavar="NAMES",
                   help="simulate only these culprits (comma-separated names or groups: "
                   "scaling, normalization, colour, resize, mode, preprocessing); 'none', "
                   "the reference, always runs. Default: all")
    d.add_argument("--batch-sizes", metavar="N,N",
                   help="simulate training mode only at these device batch sizes (default: "
                   "1, 2, 4, ..., 64); give the device's batch size when you know it")
    d.add_argument("--shift", action="store_true",
                   help="also measure accuracy/agreement under corruptions per TTA policy")
    d.set_defaults(handler=run_doctor_cmd)
