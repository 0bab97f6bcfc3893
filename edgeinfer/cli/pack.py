"""``edgeinfer pack`` (workstation, framework installed): run the framework on real frames
and write a parity pack for ``edgeinfer verify`` on the device."""

from __future__ import annotations

import argparse

from edgeinfer.cli.common import DATA_HELP, SOURCE_HELP, add_skip_bad, positive, progress


def run_pack(args: argparse.Namespace) -> int:
    from edgeinfer.converter.detect_convert import is_detector

    if is_detector(args.source):  # issue 28: the framework's detections
        return _detector(args)
    from edgeinfer.check.verify.pack import build_pack
    from edgeinfer.data.packfile import write_pack

    pack = build_pack(args.source, args.data, spec=args.spec, weights=args.weights,
                      labels=args.labels, limit=args.limit, encoded=not args.no_encoded,
                      max_side=args.max_side, artifact=args.artifact, progress=progress,
                      skip_bad=args.skip_bad)
    out = write_pack(pack, args.output)
    size = out.stat().st_size
    print(f"{out}: {pack.n} frames ({pack.data_name}), {len(pack.labels)} classes, "
          f"{'labelled' if pack.truth is not None else 'unlabelled'}, "
          f"{'with' if pack.encoded else 'without'} encoded files"
          + (f", with the model stage of {pack.artifact['name']}" if pack.artifact else "")
          + f", {size / 1e6:.2f} MB")
    return 0


def _detector(args: argparse.Namespace) -> int:
    """A detector source's pack (check/verify/detect_pack.py)."""
    from edgeinfer.check.verify.detect_pack import build_detect_pack
    from edgeinfer.data.packfile import write_pack
    from edgeinfer.errors import ConfigError

    if args.spec or args.labels or args.artifact or args.max_side:
        raise ConfigError("--spec, --labels, --artifact and --max-side are for classifiers: "
                          "a detector source carries its spec and labels")
    pack = build_detect_pack(args.source, args.data, weights=args.weights, limit=args.limit,
                             progress=progress)
    out = write_pack(pack, args.output)
    boxes = sum(len(d[0]) for d in pack.detections or [])
    print(f"{out}: {pack.n} frames ({pack.data_name}), {len(pack.labels)} classes, "
          f"{boxes} framework detections, {out.stat().st_size / 1e6:.2f} MB")
    return 0


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
    p.add_argument("--artifact", help="also store the framework fed THIS artifact's own "
                   "preprocessed pixels: `verify` of that file then judges its model stage "
                   "as convert does (networks sensitive to pixel rounding pass on the device)")
    add_skip_bad(p)
    p.add_argument("--no-encoded", action="store_true",
                   help="do not store the original encoded files (no decode check)")
    p.set_defaults(handler=run_pack)
