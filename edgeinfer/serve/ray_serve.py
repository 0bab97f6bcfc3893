"""Scale-out on Ray Serve: the same Open Inference Protocol app, as N replicas.

Why Ray Serve: it runs here without containers or Kubernetes (Triton and KServe do not),
and it serves an ASGI app as is. Each replica builds the very app ``edgeinfer serve``
runs (:func:`~edgeinfer.serve.app.create_app` on its own :class:`ModelSet`), so routes,
codec, limits and metrics are identical; Ray's HTTP proxy spreads requests over the
replicas and its controller replaces a replica that dies. Per replica the budgets of
:class:`ServeConfig` apply (``max_queue`` becomes Ray's ``max_ongoing_requests`` too).

Loopback addresses: Ray rewrites "127.0.0.1" in any cluster address to the machine's
private address (``resolve_ip_for_localhost``), so even a driver started with
``_node_ip_address="127.0.0.1"`` talked to the cluster on 192.0.2.2 and ``ray start``
left the GCS listening on all interfaces (measured with ``ss``). Ray's single-machine
mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, set here unless the caller set it) keeps
Ray's own addresses on loopback. It does not cover the replica's inter-deployment gRPC
server, which Ray Serve binds to ``[::]:0`` (every interface, unauthenticated, its handler
unpickles request metadata) with no setting for the address. Hence:

- a local cluster (no ``address``) runs with Ray's mutual TLS, on a CA and certificate
  generated at start and removed at exit (:func:`edgeinfer.serve.ray_tls.cluster_tls`):
  every gRPC server of the cluster, that one included, refuses a client without it;
- an existing cluster (``address``) must use Ray's mutual TLS too (``RAY_USE_TLS`` in this
  process's environment) unless ``insecure`` says the network is trusted;
- after the app is up, and every ``GUARD_PERIOD_S`` while it runs, the listener guard
  (:mod:`edgeinfer.serve.ray_guard`) checks every listener of this process tree: loopback
  only, or refusing a plaintext client; else the app is shut down and the command exits 2
  (not with ``insecure`` on a cluster without TLS: the caller said the network is trusted).
  A Ray upgrade that adds a listener or stops applying TLS to one is caught, not trusted.

A cluster started here is ``ray.init(_node_ip_address="127.0.0.1",
include_dashboard=False)``; :func:`local_cluster` starts a head and more node processes
on loopback (for tests and tools); the proxy listens on ``cfg.host`` (127.0.0.1 unless
told otherwise).

A request that was running in a replica when it died fails (the proxy answers 5xx or
drops the connection); the client retries it once (tools/serve_ray.py measures this:
docs/serve/ray.md). Needs the ``ray`` extra (``pip install 'edgeinfer[ray]'``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from edgeinfer.errors import ConfigError, require
from edgeinfer.serve.config import ServeConfig
from edgeinfer.serve.ray_tls import cluster_tls, require_tls, tls_enabled

#: Ray's single-machine mode: addresses stay on loopback (see the module docstring). Read
#: by ray when it is imported, so it is set before the import below.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
for _k, _v in LOOPBACK_ENV.items():
    os.environ.setdefault(_k, _v)

require("ray", "ray", "edgeinfer serve --ray")

from ray import serve  # noqa: E402 - after the extra check

APP_NAME = "edgeinfer"

#: Seconds between two runs of the listener guard while serving: a replica that replaces a
#: dead one opens a new port, checked within this time (reading /proc costs milliseconds).
GUARD_PERIOD_S = 10.0


class _Replica:
    """One replica: loads the models and builds the app when Ray starts it."""

    def __init__(self, artifacts: list[str], cfg: ServeConfig) -> None:
        self._artifacts = artifacts
        self._cfg = cfg

    def __serve_build_asgi_app__(self) -> Any:
        from edgeinfer.serve.app import create_app
        from edgeinfer.serve.models import ModelSet

        return create_app(ModelSet.load(self._artifacts, self._cfg), self._cfg)


def build(artifacts: Sequence[str | os.PathLike], cfg: ServeConfig, replicas: int,
          num_cpus: float = 1.0) -> Any:
    """The bound Ray Serve application (pass it to ``serve.run``)."""
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise ConfigError(f"replicas must be a positive integer, got {replicas!r}")
    paths = [os.fspath(os.path.abspath(a)) for a in artifacts]
    for p in paths:
        if not os.path.isfile(p):
            raise ConfigError(f"artifact {p} does not exist: check the path")
    ingress = serve.ingress()(_Replica)
    dep = serve.deployment(ingress, name=APP_NAME, num_replicas=replicas,
                           max_ongoing_requests=cfg.max_queue,
                           ray_actor_options={"num_cpus": num_cpus},
                           health_check_period_s=2, health_check_timeout_s=10,
                           graceful_shutdown_timeout_s=cfg.timeout_s)
    return dep.bind(paths, cfg)


@contextlib.contextmanager
def local_cluster(nodes: int = 2, cpus_per_node: int = 1, tls: bool = True) -> Iterator[str]:
    """A real Ray cluster on 127.0.0.1: a head and ``nodes - 1`` more node processes (each
    its own raylet), dashboard off; yields the address, shuts every process down after.

    ``tls``: Ray's mutual TLS on certificates generated for the cluster (the ``RAY_TLS_*``
    variables stay set in this process while the block runs, so a driver started from it,
    e.g. ``edgeinfer serve --ray-address``, joins with them). ``tls=False`` is the insecure
    baseline tools/serve_ray.py measures TLS's cost against."""
    from ray.cluster_utils import Cluster

    with cluster_tls() if tls else contextlib.nullcontext():
        cluster = Cluster(initialize_head=True, head_node_args={
            "node_ip_address": "127.0.0.1", "include_dashboard": False,
            "num_cpus": cpus_per_node})
        try:
            for _ in range(nodes - 1):
                cluster.add_node(node_ip_address="127.0.0.1", num_cpus=cpus_per_node)
            yield cluster.address
        finally:
            cluster.shutdown()


def serve_ray(artifacts: Sequence[str | os.PathLike], cfg: ServeConfig, replicas: int,
              address: str | None = None, num_cpus: float = 1.0,
              announce: Callable[[str], None] | None = None, insecure: bool = False) -> int:
    """Deploy on Ray Serve and block until SIGTERM/SIGINT; then shut the app down, exit 0.

    ``address``: an existing cluster (``"127.0.0.1:6379"``), which must run Ray's mutual TLS
    unless ``insecure``; None starts a local one on loopback, with TLS, for the life of this
    call. Raises :class:`~edgeinfer.serve.ray_guard.ExposedListenerError` (and shuts the app
    down) if a listener of this process tree is reachable beyond loopback in plaintext.
    """
    app = build(artifacts, cfg, replicas, num_cpus)  # ConfigError before starting anything
    if cfg.port == 0:
        raise ConfigError("--ray needs a fixed --port (Ray's proxy cannot pick one)")
    # Ray's own rule would make ray.init() join RAY_ADDRESS, or the last `ray start` cluster
    # of this machine, when given no address: RAY_ADDRESS is taken as --ray-address (with its
    # TLS rule), and a local cluster is always this command's own (address="local" below).
    what = "--ray-address"
    if not address and os.environ.get("RAY_ADDRESS"):
        address, what = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
    if address:
        require_tls(insecure, what=what)
        # --ray-insecure says the network is trusted: the guard would refuse what it allows
        guard = not (insecure and not tls_enabled())
        return _serve(app, cfg, replicas, address, announce, guard)
    with cluster_tls():
        return _serve(app, cfg, replicas, None, announce, True)


def driver_ip(address: str) -> str:
    """The address this driver registers with: the one the cluster reaches it on.

    Why explicit: without ``_node_ip_address`` Ray registers the driver with the machine's
    private address (seen: 192.0.2.2, not loopback), and in single-machine mode (set at
    import) it would say 127.0.0.1 even for a cluster on other machines. A loopback cluster
    address (127.0.0.1, or 127.0.0.2 standing in for a machine) is this machine's node: that
    address; another host: the local address routing to it (a UDP connect sends nothing).
    """
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    host = "127.0.0.1" if host == "localhost" else host
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                       socket.SOCK_DGRAM) as s:
        try:
            s.connect((host, 9))
        except OSError as e:
            raise ConfigError(f"--ray-address {address}: no route to {host} ({e})") from None
        return s.getsockname()[0]


def _serve(app: Any, cfg: ServeConfig, replicas: int, address: str | None,
           announce: Callable[[str], None] | None, guard: bool) -> int:
    import ray

    from edgeinfer.serve import ray_guard

    if address:
        ray.init(address=address, _node_ip_address=driver_ip(address), log_to_driver=False)
    else:
        # "local": a new cluster even when another one runs on this machine (without it,
        # ray.init() joined the last `ray start` cluster: seen when two ran at once)
        ray.init(address="local", _node_ip_address="127.0.0.1", include_dashboard=False,
                 log_to_driver=False)
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGTERM, signal.SIGINT)}
    judged: dict[tuple[int, int], str] = {}
    try:
        serve.start(http_options={"host": cfg.host, "port": cfg.port})
        serve.run(app, name=APP_NAME, route_prefix="/", blocking=False)
        if guard:  # before announcing: an exposed app never serves
            ray_guard.check(judged=judged)
        url = f"http://{cfg.host}:{cfg.port}"
        (announce or print)(f"serving on Ray Serve, {replicas} replica(s), on {url} (Open "
                            f"Inference Protocol: {url}/v2/models/NAME/infer)")
        while not stop.wait(GUARD_PERIOD_S):
            if guard:
                ray_guard.check(judged=judged)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        serve.delete(APP_NAME)
        serve.shutdown()
        ray.shutdown()
    return 0
