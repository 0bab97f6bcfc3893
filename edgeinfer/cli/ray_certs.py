"""``edgeinfer ray-certs``: a CA and per-node certificates for a Ray cluster across machines.

Why a command: ``edgeinfer serve --ray --ray-address`` refuses a cluster without Ray's
mutual TLS, and making a CA plus one certificate per machine by hand (openssl, SANs, key
modes) is where such setups go wrong. Logic: :func:`edgeinfer.serve.ray_tls.write_node_certs`.
(The module is ``ray_certs`` because a module name cannot hold '-'.)
"""

from __future__ import annotations

import argparse

from edgeinfer.cli.common import positive, progress


def run_ray_certs(args: argparse.Namespace) -> int:
    from edgeinfer.serve.ray_tls import parse_nodes, write_node_certs

    envs = write_node_certs(args.directory, parse_nodes(args.node), days=args.days)
    for name, env in envs.items():
        print(f"{name}\t{env}")
    progress(f"CA and {len(envs)} node certificate(s) in {args.directory}; copy NAME/ to that "
             "machine, then `set -a; . NAME/ray-tls.env` before `ray start` or `edgeinfer "
             "serve --ray --ray-address`; keep ca.key off the nodes")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ray-certs", help="CA and per-node certificates for Ray's mutual TLS (serve --ray)",
        description="Write a CA (ca.crt, ca.key) and, per --node, NAME/{ca.crt,node.crt,"
        "node.key,auth_token,ray-tls.env} into DIRECTORY (created with mode 0700; must be "
        "new or empty). "
        "Every machine of the cluster, and the one running edgeinfer serve --ray "
        "--ray-address, needs its own node.")
    p.add_argument("directory", metavar="DIRECTORY")
    p.add_argument("--node", action="append", required=True, metavar="NAME=IP[,HOST...]",
                   help="a machine: its name and the addresses Ray reaches it on (repeat)")
    p.add_argument("--days", type=positive, default=365, help="validity (default 365 days)")
    p.set_defaults(handler=run_ray_certs)
