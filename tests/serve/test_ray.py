"""Ray Serve scale-out on a real local Ray cluster: a head and a second node process, both
on 127.0.0.1, started by ``local_cluster``; the one command ``edgeinfer serve ARTIFACT
--ray --replicas 2`` deploys the same app; a tritonclient round trip equals the Predictor
bit for bit, and SIGTERM ends the command with exit 0. The replica-kill run and the
1-vs-2-replica throughput are in tools/serve_ray.py (docs/serve/ray.md): too slow here."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from edgeinfer.runtime.predictor import Predictor


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ray_command_refuses_port_0_with_exit_2(fashion_artifact, capsys) -> None:
    from edgeinfer.cli import main

    assert main(["serve", str(fashion_artifact), "--ray", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "fixed --port" in err and "Traceback" not in err


@pytest.mark.slow
def test_two_replicas_on_a_two_node_cluster_equal_the_predictor(fashion_artifact,
                                                                 jpegs) -> None:
    from edgeinfer.serve.ray_serve import LOOPBACK_ENV, local_cluster

    want = np.stack([Predictor(fashion_artifact, threads=1).predict_probs(j) for j in jpegs])
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with local_cluster(nodes=2, cpus_per_node=1) as address:
        assert address.startswith("127.0.0.1:")
        proc = subprocess.Popen(
            [sys.executable, "-m", "edgeinfer", "serve", str(fashion_artifact), "--ray",
             "--ray-address", address, "--replicas", "2", "--port", str(port), "--threads",
             "1"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **LOOPBACK_ENV}, start_new_session=True)
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                assert proc.poll() is None, proc.stderr.read()
                try:
                    if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            c = triton.InferenceServerClient(f"127.0.0.1:{port}")
            inp = triton.InferInput("frame", [len(jpegs)], "BYTES")
            inp.set_data_from_numpy(np.array(jpegs, dtype=np.object_))
            for _ in range(4):  # several calls: both replicas answer (round robin or not)
                got = c.infer("fashion", [inp]).as_numpy("probs")
                np.testing.assert_array_equal(got, want)
            assert c.get_model_metadata("fashion")["platform"] == "onnxruntime_onnx"
            r = httpx.post(f"{url}/predict?top_k=%C2%B2", content=jpegs[0])
            assert r.status_code == 400  # the same app, the same refusals
            c.close()
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            rc = proc.wait(120)
        assert rc == 0
