"""What ``edgeinfer serve --ray`` exposes on the network (issue 30), checked from outside.

The guard test starts the real local Ray cluster and app exactly as the command does, lists
every TCP listener of its process tree with ``ss`` (not with the product's own /proc reader:
an independent view), and sends each listener that is not bound to loopback what a plaintext
gRPC client sends first, at 127.0.0.2. On Linux 127.0.0.0/8 is all loopback: a listener on
127.0.0.1 refuses a connection to 127.0.0.2, a wildcard one answers there as it would on the
machine's network address, so no byte leaves loopback. A plaintext HTTP/2 SETTINGS frame in
reply fails the test (Ray Serve 2.60's replica gRPC server without TLS: it unpickles request
metadata). Every listener must match :data:`EXPECTED`, so a Ray version that adds one fails
here until someone says why it is there.
"""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


@dataclass(frozen=True)
class Expected:
    """A process of the Ray tree that may listen, matched on its command line."""

    pattern: str  # regex searched in the process's command line
    loopback: int  # at most this many listeners on 127.0.0.0/8 or ::1
    wildcard: int  # at most this many on every interface, each refusing plaintext
    why: str


#: The listeners of ``edgeinfer serve MODEL --ray --replicas 1`` (local cluster, Ray 2.60).
EXPECTED = {
    "driver": Expected(r"-m edgeinfer serve", 1, 0,
                       "the driver's core-worker gRPC server, on the node address 127.0.0.1"),
    "gcs": Expected(r"/gcs_server ", 1, 0, "the GCS: cluster metadata, actors, jobs"),
    "raylet": Expected(r"/raylet ", 2, 0, "node manager and object manager gRPC"),
    "monitor": Expected(r"autoscaler/_private/monitor\.py", 1, 0,
                        "the autoscaler monitor's Prometheus metrics (HTTP)"),
    "dashboard": Expected(r"dashboard/dashboard\.py", 1, 0,
                          "the dashboard head's metrics port: runs even with "
                          "include_dashboard=False (minimal mode)"),
    "dashboard agent": Expected(r"^ray::DashboardAgent|dashboard/agent\.py", 3, 0,
                                "the per-node agent: gRPC, its HTTP port, metrics"),
    "runtime env agent": Expected(r"^ray::RuntimeEnvAgent|runtime_env/agent", 1, 0,
                                  "installs runtime environments (HTTP)"),
    "serve controller": Expected(r"^ray::ServeController", 1, 0,
                                 "an actor: its core-worker gRPC server"),
    "proxy": Expected(r"^ray::ProxyActor", 2, 0,
                      "core-worker gRPC, and the HTTP port of --host/--port (127.0.0.1)"),
    "replica": Expected(r"^ray::ServeReplica", 1, 1,
                        "core-worker gRPC, and Serve's inter-deployment gRPC server that Ray "
                        "binds to [::]:0 with no setting: it must demand the cluster's "
                        "certificate (Ray's mutual TLS)"),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tree(root: int) -> dict[int, str]:
    """{pid: command line} of ``root`` and its descendants (from ps)."""
    out = subprocess.run(["ps", "-ww", "-e", "-o", "pid=,ppid=,args="], capture_output=True,
                         text=True, check=True).stdout
    parent, args = {}, {}
    for line in out.splitlines():
        pid, ppid, *cmd = line.split(None, 2)
        parent[int(pid)], args[int(pid)] = int(ppid), (cmd[0] if cmd else "")
    tree, todo = {}, [root]
    while todo:
        p = todo.pop()
        if p not in tree and p in args:
            tree[p] = args[p]
            todo += [c for c, pp in parent.items() if pp == p]
    return tree


def _ss_listeners(pids: set[int]) -> list[tuple[str, int, list[int]]]:
    """(bound address, port, holders) of every TCP listener of ``pids``, from ``ss -ltnpH``.

    A socket may be held by several processes (a child inherits the descriptor), so each
    listener comes once, with every process of the tree that holds it."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        f = line.split()
        if len(f) < 6:
            continue
        host, port = f[3].rsplit(":", 1)
        holders = sorted({int(p) for p in re.findall(r"pid=(\d+),", f[5])} & pids)
        if holders:
            found.append((host.strip("[]"), int(port), holders))
    return found


def _is_loopback(host: str) -> bool:
    if host in ("*", "0.0.0.0", "::"):
        return False
    addr = ipaddress.ip_address(host.split("%")[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        addr = addr.ipv4_mapped
    return addr.is_loopback


def _probe_127_0_0_2(port: int) -> bytes | str:
    """The plaintext HTTP/2 preface at 127.0.0.2: the bytes that came back, or why none."""
    try:
        with socket.create_connection(("127.0.0.2", port), timeout=5) as s:
            s.sendall(H2_PREFACE)
            return s.recv(64)
    except OSError as e:
        return type(e).__name__


def _certs_dir(tree: dict[int, str]) -> Path:
    """The certificate directory the cluster's processes were started with (the driver sets
    it after its own start, so its children's environment tells, not its own)."""
    for pid in tree:
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for kv in env:
            if kv.startswith(b"RAY_TLS_CA_CERT="):
                return Path(kv.split(b"=", 1)[1].decode()).parent
    raise AssertionError("no process of the Ray tree runs with RAY_TLS_CA_CERT")


def _start_serve(args: list[str], port: int, log: Path) -> subprocess.Popen:
    """The command as a user runs it (its log in a file: a full pipe would block it)."""
    with log.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "edgeinfer", "serve", *args, "--port",
                                 str(port), "--threads", "1"], stdout=f, stderr=f,
                                start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready",
                             timeout=2).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError("edgeinfer serve --ray did not become ready in 240 s: "
                             + log.read_text()[-2000:])
    except BaseException:
        _stop(proc)  # never leave a cluster behind
        raise


def _stop(proc: subprocess.Popen) -> int:
    """SIGTERM to the command only (it shuts its cluster down), SIGKILL to the group after."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


@pytest.mark.slow
def test_local_ray_cluster_listens_on_loopback_or_refuses_plaintext(fashion_artifact,
                                                                    tmp_path) -> None:
    port = _free_port()
    proc = _start_serve([str(fashion_artifact), "--ray", "--replicas", "1"], port,
                        tmp_path / "serve.log")
    try:
        tree = _tree(proc.pid)
        found = _ss_listeners(set(tree))
        seen: dict[tuple[str, str], int] = {}
        problems = []
        for host, lport, holders in found:
            kind = next((k for k, e in EXPECTED.items()
                         if any(re.search(e.pattern, tree[p]) for p in holders)), None)
            where = (f"{[tree[p][:100] for p in holders]} (pids {holders}) on "
                     f"{host}:{lport}")
            if kind is None:
                problems.append(f"unexpected listener: {where}")
                continue
            scope = "loopback" if _is_loopback(host) else "wildcard"
            seen[kind, scope] = seen.get((kind, scope), 0) + 1
            if seen[kind, scope] > getattr(EXPECTED[kind], scope):
                problems.append(f"one {scope} listener more than expected for {kind}: {where}")
            answer = _probe_127_0_0_2(lport)
            if scope == "loopback":
                if isinstance(answer, bytes):
                    problems.append(f"bound to loopback yet answers at 127.0.0.2: {where}")
            elif isinstance(answer, bytes) and len(answer) >= 9 and answer[3] == 0x04:
                problems.append(f"plaintext HTTP/2 SETTINGS from 127.0.0.2: {where}")
            elif isinstance(answer, bytes) and answer and answer[0] != 0x15:
                problems.append(f"plaintext answer {answer[:16]!r} from 127.0.0.2: {where}")
        assert found and ("replica", "loopback") in seen, found  # the app really ran
        assert not problems, "\n".join(problems)
        certs = _certs_dir(tree)
        assert certs.is_dir() and certs.stat().st_mode & 0o777 == 0o700
        assert (certs / "node.key").stat().st_mode & 0o777 == 0o600
    finally:
        rc = _stop(proc)
    assert rc == 0
    assert not certs.exists(), "the cluster's certificates outlived it"


def test_ray_address_without_tls_is_refused_in_one_line(tmp_path) -> None:
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"refused before any model is read")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_TLS")}
    env.pop("RAY_USE_TLS", None)
    r = subprocess.run([sys.executable, "-m", "edgeinfer", "serve", str(artifact), "--ray",
                        "--ray-address", "127.0.0.1:9", "--port", str(_free_port())],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeinfer: error:"), r.stderr[-2000:]
    assert "--ray-insecure" in lines[0] and "RAY_USE_TLS" in lines[0]


def test_ray_address_from_the_environment_gets_the_same_rule(tmp_path) -> None:
    """Without --ray-address, Ray's own ray.init() would join RAY_ADDRESS silently (no TLS
    check): edgeinfer takes it as --ray-address, so the insecure cluster is refused."""
    artifact = tmp_path / "m.onnx"
    artifact.write_bytes(b"refused before any model is read")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_TLS")}
    env.pop("RAY_USE_TLS", None)
    env["RAY_ADDRESS"] = "127.0.0.1:9"
    r = subprocess.run([sys.executable, "-m", "edgeinfer", "serve", str(artifact), "--ray",
                        "--port", str(_free_port())],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeinfer: error: RAY_ADDRESS:"), lines
    assert "--ray-insecure" in lines[0]
