"""``edgeinfer audit``: is the spec what the model was trained with? Exit status 0 = pass
or not verifiable, 1 = warn or refuse (a culprit was found), 2 = bad input."""

from __future__ import annotations

import argparse

from edgeinfer.cli.common import EXIT_FAILED, add_skip_bad, add_source_args, emit_json, progress


def run_audit(args: argparse.Namespace) -> int:
    from edgeinfer.converter.sources.load import resolve_labels, resolve_source
    from edgeinfer.converter.spec_resolve import resolve
    from edgeinfer.data.frames import load_frames
    from edgeinfer.diagnose.audit import DEFAULT_LIMIT, audit_rows, audit_spec
    from edgeinfer.runtime.image_probe import probe

    spec = resolve(args.source, args.spec).spec
    s = resolve_source(args.source, spec, args.weights, progress)
    names = resolve_labels(args.labels, s.reference) or s.labels
    frames = load_frames(args.data, spec, limit=args.limit, class_names=names,
                         skip_bad=args.skip_bad, probe=probe)
    for bad in frames.skipped:
        progress(f"skipped (--skip-bad): {bad}")
    res = audit_spec(s, spec, frames, limit=args.limit or DEFAULT_LIMIT)
    print(f"{'hypothesis':<22}{'accuracy':>10}{'agree':>8}{'BN fit':>9}  detail")
    for r in audit_rows(res):
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.1%}"
        agr = "-" if r["agreement"] is None else f"{r['agreement']:.0%}"
        bn = "-" if r["bn_fit"] is None else f"{r['bn_fit']:.3g}"
        print(f"{r['culprit']:<22}{acc:>10}{agr:>8}{bn:>9}  {r['detail']}"
              + (f" ({r['note']})" if r["note"] else ""))
    print(f"{res.verdict.upper()}: {res.message} [{res.seconds:.1f} s]"
          + (f" ({len(frames.skipped)} undecodable files skipped)" if frames.skipped else ""))
    for n in res.notes:
        print(f"note: {n}")
    emit_json(res.to_dict(), args.json)
    return EXIT_FAILED if res.verdict in ("warn", "refuse") else 0



def register(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("audit", help="check a spec against the model's BN statistics and "
                       "labelled data (exit 1 when it looks wrong)")
    add_source_args(a)
    add_skip_bad(a)
    a.set_defaults(handler=run_audit)
