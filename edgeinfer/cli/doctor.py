"""``edgeinfer audit`` (is the spec what the model was trained with?) and ``edgeinfer
doctor`` (why is my device worse?). Exit status of both: 0 = nothing found (audit: pass or
not verifiable; doctor: the device agrees with the reference / no culprit in the what-if
audit), 1 = a culprit was found (audit: warn or refuse; doctor: the top culprit is not
``none``), 2 = bad input."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgeinfer.cli.common import DATA_HELP, EXIT_FAILED, SOURCE_HELP, positive, progress


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--data", required=True, help="the real images: " + DATA_HELP)
    p.add_argument("--spec", help="PreprocessSpec JSON: the TRAINING preprocessing "
                   "(default: the bundled model's)")
    p.add_argument("--weights", help="torch state dict (loaded with weights_only=True)")
    p.add_argument("--labels", help="class names, one per line (for labelled folders/CSVs)")
    p.add_argument("--limit", type=positive, help="use at most this many frames")
    p.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT ('-' = stdout)")


def _emit_json(data: dict, out: str | None) -> None:
    if not out:
        return
    text = json.dumps(data, indent=2)
    if out == "-":
        print(text)
    else:
        Path(out).write_text(text + "\n")


def run_audit(args: argparse.Namespace) -> int:
    from edgeinfer.converter.audit import DEFAULT_LIMIT, audit_rows, audit_spec
    from edgeinfer.converter.sources import resolve_labels, resolve_source, source_spec
    from edgeinfer.parity.frames import load_frames

    spec = source_spec(args.source, args.spec)
    s = resolve_source(args.source, spec, args.weights, progress)
    names = resolve_labels(args.labels, s.reference) or s.labels
    frames = load_frames(args.data, spec, limit=args.limit, class_names=names)
    res = audit_spec(s, spec, frames, limit=args.limit or DEFAULT_LIMIT)
    print(f"{'hypothesis':<22}{'accuracy':>10}{'agree':>8}{'BN fit':>9}  detail")
    for r in audit_rows(res):
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.1%}"
        agr = "-" if r["agreement"] is None else f"{r['agreement']:.0%}"
        bn = "-" if r["bn_fit"] is None else f"{r['bn_fit']:.3g}"
        print(f"{r['culprit']:<22}{acc:>10}{agr:>8}{bn:>9}  {r['detail']}"
              + (f" ({r['note']})" if r["note"] else ""))
    print(f"{res.verdict.upper()}: {res.message} [{res.seconds:.1f} s]")
    for n in res.notes:
        print(f"note: {n}")
    _emit_json(res.to_dict(), args.json)
    return EXIT_FAILED if res.verdict in ("warn", "refuse") else 0


def run_doctor_cmd(args: argparse.Namespace) -> int:
    from edgeinfer.check.doctor import run_doctor
    from edgeinfer.check.doctor_report import summary, write_report

    res = run_doctor(args.source, args.data, spec=args.spec, weights=args.weights,
                     labels=args.labels, device_predictions=args.device_predictions,
                     limit=args.limit, shift=args.shift, progress=progress)
    print(summary(res))
    if res.robustness is not None:
        from edgeinfer.check.robustness import markdown

        print(markdown(res.robustness, {}))
    _emit_json(res.to_dict(), args.json)
    if args.report:
        for f in write_report(res, args.report):
            progress(f"wrote {f}")
    return EXIT_FAILED if res.top != "none" else 0


def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("audit", help="check a spec against the model's BN statistics and "
                       "labelled data (exit 1 when it looks wrong)")
    _common(a)
    a.set_defaults(handler=run_audit)
    d = sub.add_parser("doctor", help="rank the culprits of a device's accuracy drop "
                       "(exit 1 when the top culprit is not 'none')")
    _common(d)
    d.add_argument("--device-predictions", metavar="CSV",
                   help="what the device predicted: CSV with header image,prediction (image "
                   "relative to --data; prediction a class index or label)")
    d.add_argument("--report", metavar="DIR", help="write doctor.json, doctor.md and PNGs")
    d.add_argument("--shift", action="store_true",
                   help="also measure accuracy/agreement under corruptions per TTA policy")
    d.set_defaults(handler=run_doctor_cmd)
