"""``edgeinfer info``: what an artifact says about itself."""

from __future__ import annotations

import argparse
import json


def run(args: argparse.Namespace) -> int:
    from edgeinfer.runtime.metadata import read_metadata

    meta = read_metadata(args.artifact)
    if args.json:
        print(json.dumps(meta.to_dict(), indent=2))
        return 0
    s, prov, par = meta.spec, meta.provenance, meta.parity
    print(f"artifact:   {args.artifact}")
    print(f"source:     {prov.get('source')} ({prov.get('framework')} "
          f"{prov.get('framework_version')})")
    print(f"classes:    {len(meta.labels)} ({', '.join(meta.labels[:5])}"
          f"{', ...' if len(meta.labels) > 5 else ''})")
    print(f"frame:      uint8 NHWC, {s.frame_color}; model {s.model_color} {s.size[0]}x"
          f"{s.size[1]} {s.layout}, resize {s.resize} ({s.interpolation}), "
          f"mean {list(s.mean)} std {list(s.std)} scale {s.scale:g}")
    print(f"BatchNorm:  {prov.get('batchnorm_before')} in the exported graph, "
          f"{prov.get('batchnorm_left')} left")
    if par:
        print(f"parity:     {par.get('data')} n={par.get('n')}: max|dprob| "
              f"{par.get('max_abs', float('nan')):.2e}, top-1 agreement "
              f"{par.get('top1_agreement', float('nan')):.2%}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="print what an artifact says about itself")
    p.add_argument("artifact")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=run)
