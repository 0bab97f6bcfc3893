"""`edgeinfer serve --ray` on a real local Ray cluster (head + a second node), loopback only.

    python tools/serve_ray.py --artifact fashion.onnx [--insecure-baseline] [--out docs/serve]

1. starts a Ray head and a second node as separate processes (each its own raylet), both on
   127.0.0.1, dashboard off, one CPU each, with Ray's mutual TLS on certificates generated
   for the cluster (``edgeinfer.serve.ray_serve.local_cluster``);
2. runs the one command ``python -m edgeinfer serve ARTIFACT --ray --ray-address ...
   --replicas N --port P`` for N = 1 and N = 2 (it joins with the cluster's certificate);
3. checks a tritonclient round trip against the in-process Predictor (bit-identical);
4. measures throughput with the same bounded load (tools/serve_load.py's client) for 1 and
   2 replicas;
5. lists every TCP listener of this tool's process tree (the cluster and the command) and
   probes each one not bound to loopback with a plaintext HTTP/2 preface
   (``edgeinfer.serve.ray_guard``): one that answers in plaintext is a FAILURE, printed as
   such, and the tool exits 1;
6. with 2 replicas, kills one replica actor (``ray.kill``) in the middle of a bounded load
   and counts requests that failed once and were retried (the documented client retry:
   one retry after 0.2 s) and requests that failed for good;
7. ``--insecure-baseline``: the same 1/2-replica throughput on a cluster without TLS (the
   command joins it with ``--ray-insecure``), to measure what TLS costs; its exposed replica
   port is recorded as the expected exposure of that baseline, not as a pass;
8. writes docs/serve/ray.json with the cluster shape, the CPU flags and the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import tritonclient.http as triton

sys.path.insert(0, str(Path(__file__).resolve().parent))

from serve_load import (  # noqa: E402 - tools/ is not a package
    CLIENTS,
    REPO,
    cpu_flags,
    cpu_model,
    drive,
    images,
    infer_input,
    load,
    summarize,
)

from edgeinfer.runtime.predictor import Predictor  # noqa: E402
from edgeinfer.serve import ray_guard  # noqa: E402
from edgeinfer.serve.ray_serve import LOOPBACK_ENV, local_cluster  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(cmd: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=REPO, env={**os.environ, **LOOPBACK_ENV})


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 60) -> int | None:
    """Signal the process group this tool started, then wait (SIGKILL after ``wait``)."""
    if proc.poll() is None:
        os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    return proc.returncode


def wait_ready(url: str, proc: subprocess.Popen, seconds: float = 240) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if proc.poll() is not None:
            raise RuntimeError(f"edgeinfer serve --ray exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return time.perf_counter() - t0
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the Ray Serve app did not become ready")


def network(roots: list[int]) -> dict:
    """Every listener of the trees under ``roots``; those beyond loopback, probed."""
    found = sorted({ln for r in roots for ln in ray_guard.listeners(r)},
                   key=lambda x: (x.pid, x.port))
    beyond = [ln for ln in found if not ray_guard.is_loopback(ln.ip)]
    bad = ray_guard.exposed(beyond)
    return {"listeners": len(found),
            "loopback": sorted({ln.ip for ln in found if ray_guard.is_loopback(ln.ip)}),
            "beyond_loopback": [str(ln) for ln in beyond],
            "exposed": [f"{ln}: {why}" for ln, why in bad]}


def kill_test(url: str, gcs: str, name: str, jpegs: list[bytes], want: list[int],
              total: int, clients: int = 8) -> dict:
    """``total`` requests from ``clients`` threads; one replica is killed (``ray.kill``)
    when a third of them are done. Each request that fails is retried once after 0.2 s
    (the documented client retry); counted: first-try failures, retried successes, and
    requests that failed for good."""
    import base64

    import ray

    ray.init(address=gcs, _node_ip_address="127.0.0.1", log_to_driver=False)
    actors = [a for a in ray.util.list_named_actors(all_namespaces=True)
              if a["name"].startswith("SERVE_REPLICA")]
    stats = {"requests": 0, "ok_first_try": 0, "retried_ok": 0, "failed": 0, "wrong": 0,
             "first_errors": {}, "replicas_before": len(actors)}
    lock = threading.Lock()
    bodies = [{"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [1],
                           "data": [base64.b64encode(j).decode()]}]} for j in jpegs]
    counter = iter(range(total))

    def one(c: httpx.Client, i: int) -> None:
        r = c.post(f"/v2/models/{name}/infer", json=bodies[i % len(bodies)])
        r.raise_for_status()
        top = int(np.argmax(r.json()["outputs"][0]["data"]))
        if top != want[i % len(bodies)]:
            with lock:
                stats["wrong"] += 1

    def worker() -> None:
        with httpx.Client(base_url=url, timeout=60) as c:
            for i in counter:
                if i == total // 3:
                    victim = actors[0]
                    ray.kill(ray.get_actor(victim["name"], namespace=victim["namespace"]),
                             no_restart=True)
                    stats.update(killed=victim["name"], killed_at_request=i)
                try:
                    one(c, i)
                    key = "ok_first_try"
                except Exception as e:  # noqa: BLE001 - counted, then retried once
                    k = type(e).__name__ + (f" {e.response.status_code}"
                                            if isinstance(e, httpx.HTTPStatusError) else "")
                    with lock:
                        stats["first_errors"][k] = stats["first_errors"].get(k, 0) + 1
                    time.sleep(0.2)
                    try:
                        one(c, i)
                        key = "retried_ok"
                    except Exception:  # noqa: BLE001
                        key = "failed"
                with lock:
                    stats["requests"] += 1
                    stats[key] += 1

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    time.sleep(15)  # the controller starts a replacement
    stats["replicas_after"] = len([a for a in ray.util.list_named_actors(all_namespaces=True)
                                   if a["name"].startswith("SERVE_REPLICA")])
    ray.shutdown()
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--artifact", required=True)
    ap.add_argument("--requests", type=int, default=600, help="per throughput run")
    ap.add_argument("--out", default=str(REPO / "docs" / "serve"))
    ap.add_argument("--logs", default="/tmp/edgeinfer-ray")
    ap.add_argument("--insecure-baseline", action="store_true",
                    help="also measure 1/2 replicas on a cluster without TLS (TLS's cost)")
    args = ap.parse_args()
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    artifact = Path(args.artifact).resolve()
    name = artifact.stem
    jpegs = images("fashion" if name == "fashion" else name)
    pred = Predictor(artifact, threads=1)
    want = [pred.predict(j, top_k=1)[0].index for j in jpegs]
    expected = np.stack([pred.predict_probs(j) for j in jpegs[:8]])
    inputs = [infer_input(j) for j in jpegs]
    doc: dict = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "load_start": load(),
                 "cluster": {"nodes": 2, "cpus_per_node": 1, "dashboard": False}, "runs": {}}
    failures = []
    for tls in (True, False) if args.insecure_baseline else (True,):
        with local_cluster(nodes=2, cpus_per_node=1, tls=tls) as gcs:
            doc["cluster"]["address"] = gcs
            for replicas in (1, 2):
                key = f"{'tls' if tls else 'plain'}-{replicas}"
                port = free_port()
                url = f"http://127.0.0.1:{port}"
                cli = start([sys.executable, "-m", "edgeinfer", "serve", str(artifact),
                             "--ray", "--ray-address", gcs, "--replicas", str(replicas),
                             "--port", str(port), "--threads", "1",
                             *([] if tls else ["--ray-insecure"])], logs / f"serve-{key}.log")
                run: dict = {"tls": tls}
                try:
                    run["ready_after_s"] = round(wait_ready(url, cli), 1)
                    c = triton.InferenceServerClient(url.removeprefix("http://"))
                    inp = triton.InferInput("frame", [8], "BYTES")
                    inp.set_data_from_numpy(np.array(jpegs[:8], dtype=np.object_))
                    got = c.infer(name, [inp]).as_numpy("probs")
                    c.close()
                    run["tritonclient_equals_predictor"] = bool(np.array_equal(got, expected))
                    run["max_abs_diff"] = float(np.abs(got - expected).max())
                    drive(url, name, inputs, want, 4, 40, 60)  # warm-up
                    run["load"] = summarize([drive(url, name, inputs, want, CLIENTS,
                                                   args.requests, 180)])
                    run["network"] = network([os.getpid(), cli.pid])
                    for line in run["network"]["exposed"]:
                        if tls:
                            failures.append(f"{key}: {line}")
                            print(f"FAILURE {key}: listener beyond loopback answers "
                                  f"plaintext: {line}", file=sys.stderr)
                        else:
                            print(f"exposed (insecure baseline, expected): {line}",
                                  file=sys.stderr)
                    if tls and replicas == 2:
                        run["kill"] = kill_test(url, gcs, name, jpegs, want, 400)
                        if run["kill"]["failed"] or run["kill"]["wrong"]:
                            failures.append(f"{key}: kill test {run['kill']}")
                        run["after_kill_equals_predictor"] = bool(np.array_equal(
                            triton.InferenceServerClient(url.removeprefix("http://")).infer(
                                name, [inp]).as_numpy("probs"), expected))
                        run["network_after_kill"] = network([os.getpid(), cli.pid])
                        for line in run["network_after_kill"]["exposed"]:
                            failures.append(f"{key} after kill: {line}")
                            print(f"FAILURE {key} after the kill: listener beyond loopback "
                                  f"answers plaintext: {line}", file=sys.stderr)
                    if not run["tritonclient_equals_predictor"]:
                        failures.append(f"{key}: tritonclient != Predictor")
                finally:
                    run["exit_code"] = stop(cli, signal.SIGTERM, 90)
                doc["runs"][key] = run
                print(json.dumps({key: run}, default=str), file=sys.stderr)
    doc["environment"] = {"cpu": cpu_model(), "cpus": os.cpu_count(), "cpu_flags": cpu_flags(),
                          "load_end": load()}
    rps = {k: r["load"]["throughput_rps"] for k, r in doc["runs"].items() if "load" in r}
    doc["throughput_2_over_1"] = round(rps["tls-2"] / rps["tls-1"], 2)
    if "plain-1" in rps:
        doc["tls_over_plain"] = {n: round(rps[f"tls-{n}"] / rps[f"plain-{n}"], 2)
                                 for n in ("1", "2")}
    doc["failures"] = failures
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ray.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(json.dumps(doc, indent=1, default=str))
    for f in failures:
        print(f"FAILURE {f}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
