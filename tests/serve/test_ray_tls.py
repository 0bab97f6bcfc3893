"""Ray's mutual TLS for ``edgeinfer serve --ray`` (issue 30): certificates, the listener
guard, and a two-"machine" cluster on loopback addresses.

The guard tests run real gRPC servers in this process (plaintext, and TLS demanding a
client certificate) and ask :mod:`edgeinfer.serve.ray_guard` about this process's own
listeners: no Ray needed, so they run in a second. The two-node test is the recipe of
docs/serve/ray.md: ``edgeinfer ray-certs``, ``ray start --head`` on 127.0.0.2 and ``ray
start`` on 127.0.0.3 (standing in for two machines), ``edgeinfer serve --ray --ray-address``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from edgeinfer.errors import ConfigError
from edgeinfer.runtime.predictor import Predictor
from edgeinfer.serve import ray_guard
from edgeinfer.serve.ray_tls import cluster_tls, parse_nodes, write_node_certs

RAY = Path(sys.executable).with_name("ray")


def _grpc_server(bind: str, creds: grpc.ServerCredentials | None = None) -> tuple[Any, int]:
    server = grpc.server(futures.ThreadPoolExecutor(1))
    port = (server.add_secure_port(bind, creds) if creds else server.add_insecure_port(bind))
    server.start()
    return server, port


def _mine(port: int) -> list[ray_guard.Listener]:
    return [ln for ln in ray_guard.listeners() if ln.port == port]


def test_guard_refuses_a_plaintext_grpc_server_on_every_interface() -> None:
    server, port = _grpc_server("[::]:0")
    try:
        found = _mine(port)
        assert [ln.ip for ln in found] == ["::"]
        assert ray_guard.probe("127.0.0.1", port) == "h2-settings"
        bad = ray_guard.exposed(found)
        assert bad and "plaintext" in bad[0][1]
        with pytest.raises(ray_guard.ExposedListenerError, match=f"on \\[::\\]:{port}"):
            ray_guard.check()
    finally:
        server.stop(None)


def test_guard_accepts_loopback_plaintext_and_wildcard_mutual_tls() -> None:
    with cluster_tls() as d:
        creds = grpc.ssl_server_credentials(
            [((d / "node.key").read_bytes(), (d / "node.crt").read_bytes())],
            root_certificates=(d / "ca.crt").read_bytes(), require_client_auth=True)
        tls, tls_port = _grpc_server("[::]:0", creds)
        local, local_port = _grpc_server("127.0.0.1:0")
        try:
            assert ray_guard.probe("127.0.0.1", tls_port) in ray_guard.REFUSING
            assert ray_guard.exposed(_mine(tls_port) + _mine(local_port)) == []
            # the certificate really opens it: a client with it gets HTTP/2 over TLS
            channel = grpc.secure_channel(f"127.0.0.1:{tls_port}", grpc.ssl_channel_credentials(
                (d / "ca.crt").read_bytes(), (d / "node.key").read_bytes(),
                (d / "node.crt").read_bytes()))
            grpc.channel_ready_future(channel).result(timeout=10)
            channel.close()
        finally:
            tls.stop(None)
            local.stop(None)
    assert not d.exists() and "RAY_USE_TLS" not in os.environ


def test_cluster_tls_is_private_and_removed(tmp_path) -> None:
    with cluster_tls() as d:
        assert d.stat().st_mode & 0o777 == 0o700
        for f in ("node.key", "auth_token"):
            assert (d / f).stat().st_mode & 0o777 == 0o600
        assert not list(d.glob("ca.key")), "the throw-away CA key is never written"
        assert os.environ["RAY_TLS_CA_CERT"] == str(d / "ca.crt")
    assert not d.exists()


def test_ray_certs_command_writes_a_ca_and_node_certificates(tmp_path, capsys) -> None:
    from cryptography import x509

    from edgeinfer.cli import main

    out = tmp_path / "certs"
    assert main(["ray-certs", str(out), "--node", "head=127.0.0.2",
                 "--node", "cam2=127.0.0.3,cam2.lan"]) == 0
    assert out.stat().st_mode & 0o777 == 0o700
    assert (out / "ca.key").stat().st_mode & 0o777 == 0o600
    ca = x509.load_pem_x509_certificate((out / "ca.crt").read_bytes())
    for name, host in (("head", "127.0.0.2"), ("cam2", "127.0.0.3")):
        node = out / name
        assert (node / "node.key").stat().st_mode & 0o777 == 0o600
        cert = x509.load_pem_x509_certificate((node / "node.crt").read_bytes())
        cert.verify_directly_issued_by(ca)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert host in {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)}
        env = dict(line.split("=", 1) for line in (node / "ray-tls.env").read_text().split())
        assert env["RAY_USE_TLS"] == "1" and Path(env["RAY_TLS_SERVER_KEY"]).is_file()
    assert (out / "head" / "auth_token").read_text() == (out / "cam2" / "auth_token").read_text()
    assert "head\t" in capsys.readouterr().out
    assert main(["ray-certs", str(out), "--node", "x=127.0.0.4"]) == 2  # never overwritten
    with pytest.raises(ConfigError, match="NAME=IP"):
        parse_nodes(["head"])
    with pytest.raises(ConfigError, match="empty directory"):
        write_node_certs(out, {"a": ["127.0.0.5"]})


def _ray_start(args: list[str], env_file: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}  # multi-node mode
    env.update(line.split("=", 1) for line in env_file.read_text().split())
    with log.open("w") as f:
        return subprocess.Popen([str(RAY), "start", "--block", "--disable-usage-stats",
                                 "--num-cpus", "1", *args], stdout=f, stderr=f, env=env,
                                start_new_session=True)


def _wait_for(log: Path, text: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while text not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
        time.sleep(0.5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_machine_recipe_on_loopback_addresses(fashion_artifact, jpegs, tmp_path) -> None:
    certs = tmp_path / "certs"
    write_node_certs(certs, {"a": ["127.0.0.2"], "b": ["127.0.0.3"]})
    # Ray's session holds unix sockets: the path must stay under 107 bytes, tmp_path is long
    ray_tmp = Path(tempfile.mkdtemp(prefix="ei-ray-"))
    gcs_port, http_port = _free_port(), _free_port()
    procs: list[subprocess.Popen] = []
    try:
        procs.append(_ray_start(
            ["--head", "--node-ip-address", "127.0.0.2", "--port", str(gcs_port),
             "--ray-client-server-port", str(_free_port()), "--dashboard-agent-listen-port",
             str(_free_port()), "--include-dashboard", "false", "--temp-dir",
             str(ray_tmp)], certs / "a" / "ray-tls.env", tmp_path / "head.log"))
        _wait_for(tmp_path / "head.log", "Ray runtime started", procs[0])
        procs.append(_ray_start(
            ["--address", f"127.0.0.2:{gcs_port}", "--node-ip-address", "127.0.0.3",
             "--dashboard-agent-listen-port", str(_free_port())], certs / "b" / "ray-tls.env",
            tmp_path / "worker.log"))
        _wait_for(tmp_path / "worker.log", "Ray runtime started", procs[1])
        env = {**os.environ}
        env.update(line.split("=", 1) for line in (certs / "a" / "ray-tls.env").read_text()
                   .split())
        with (tmp_path / "serve.log").open("w") as f:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "edgeinfer", "serve", str(fashion_artifact), "--ray",
                 "--ray-address", f"127.0.0.2:{gcs_port}", "--replicas", "2", "--port",
                 str(http_port), "--threads", "1"], stdout=f, stderr=f, env=env,
                start_new_session=True))
        deadline = time.monotonic() + 240
        while True:
            assert procs[2].poll() is None and time.monotonic() < deadline, (
                (tmp_path / "serve.log").read_text()[-2000:])
            try:
                if httpx.get(f"http://127.0.0.1:{http_port}/v2/health/ready",
                             timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        want = np.stack([Predictor(fashion_artifact, threads=1).predict_probs(j)
                         for j in jpegs])
        c = triton.InferenceServerClient(f"127.0.0.1:{http_port}")
        inp = triton.InferInput("frame", [len(jpegs)], "BYTES")
        inp.set_data_from_numpy(np.array(jpegs, dtype=np.object_))
        for _ in range(4):
            np.testing.assert_array_equal(c.infer("fashion", [inp]).as_numpy("probs"), want)
        c.close()
        # the gRPC servers of both "machines" refuse a plaintext client
        for p in procs[:2]:
            for ln in ray_guard.listeners(p.pid):
                if ln.ip == "::":
                    assert ray_guard.probe("127.0.0.1", ln.port) in ray_guard.REFUSING, ln
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(90)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait(10)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert procs[2].returncode == 0
