"""Before/after figures for the hostile images of issue 31 (a script, not a unit test).

    python tools/hostile_figures.py --before /tmp/before --files /tmp/hostile \
        [--cases cli,env,serve] [--out docs/security/hostile_images.json]

``--before`` is a source tree of edgeinfer as it was (``git archive <rev> edgeinfer | tar
-x -C DIR``), put first on PYTHONPATH; "after" is this checkout. ``--files`` holds the full
attack files from ``tools/make_hostile_images.py --full DIR`` (the committed regression
files are read from tests/runtime/hostile/). Each measurement runs in a fresh child:

* cli: ``edgeinfer predict out/fashion.onnx FILE``: exit code, wall time, peak RSS of the
  child (``os.wait4`` rusage, the same figure as /usr/bin/time -v);
* env: the same with ``OPENCV_IO_MAX_IMAGE_PIXELS=''`` on a normal photo (abort = -6);
* serve: ``edgeinfer serve`` (defaults: 1 worker, 30 s timeout) per case: the attack's
  HTTP status and time, another client's small requests sent every 0.5 s meanwhile (their
  worst latency and statuses), one more request after the attack was answered, and the
  server's peak RSS (VmHWM).
Why a script: the "before" runs take minutes and gigabytes, which no test may spend.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
HOSTILE = REPO / "tests" / "runtime" / "hostile"
ARTIFACT = REPO / "out" / "fashion.onnx"


def cpu() -> dict[str, object]:
    text = Path("/proc/cpuinfo").read_text()
    return {"model": re.search(r"model name\s*:\s*(.*)", text)[1], "cores": os.cpu_count(),
            "flags": sorted(set(re.findall(r"\b(avx2|avx512f|avx512_vnni|avx_vnni|sse4_2)\b",
                                           text))),
            "load": [round(v, 2) for v in os.getloadavg()]}


def env_for(tree: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_IO_")}
    if tree:
        env["PYTHONPATH"] = tree
    env.update(extra)
    return env


def run_child(cmd: list[str], env: dict[str, str], timeout: float = 300) -> dict[str, object]:
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, env=env, cwd="/tmp", stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    _, status, usage = os.wait4(p.pid, 0)
    timer.cancel()
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace").strip().splitlines()
    rc = os.waitstatus_to_exitcode(status)
    p.returncode = rc
    return {"exit": rc, "seconds": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024),
            "stderr_last": err[-1][:200] if err else ""}


def cli_cases(files: Path) -> dict[str, Path]:
    return {"desync.jpg (20000x20000 behind FF 00)": HOSTILE / "desync.jpg",
            "desync.tif (20000x20000 first tag)": HOSTILE / "desync.tif",
            "scans_20000.jpg (4000x4000, 20,000 scans, 683 KB)": files / "scans_20000.jpg"}


def worst_cases(files: Path) -> dict[str, Path]:
    return {"scans_42_5000.jpg (5000x5000 colour, 42 scans: the most admitted at 25 MP)":
            files / "scans_42_5000.jpg",
            "natural_5000.jpg (photo-like 5000x5000 progressive, 10 scans)":
            files / "natural_5000.jpg"}


def normal_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), (640, 480))
    return cv2.imencode(".jpg", img)[1].tobytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(url: str, data: bytes, timeout: float = 120) -> tuple[int, float]:
    t0 = time.perf_counter()
    req = urllib.request.Request(url, data=data, headers={"content-type": "image/jpeg"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    except OSError:
        status = -1
    return status, round(time.perf_counter() - t0, 2)


def vm_hwm(pid: int) -> int:
    m = re.search(r"VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return round(int(m[1]) / 1024)


def serve_case(tree: str | None, attack: bytes) -> dict[str, object]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edgeinfer", "serve", str(ARTIFACT),
                             "--port", str(port)], env=env_for(tree), cwd="/tmp",
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                with urllib.request.urlopen(url + "/v2/health/ready", timeout=1):
                    break
            except OSError:
                time.sleep(0.2)
        normal = normal_jpeg()
        post(url + "/predict", normal)  # warm
        base = vm_hwm(proc.pid)
        others: list[tuple[int, float]] = []
        done = threading.Event()

        def other_client() -> None:
            while not done.is_set():
                others.append(post(url + "/predict", normal))
                done.wait(0.5)

        th = threading.Thread(target=other_client)
        th.start()
        time.sleep(0.3)
        status, secs = post(url + "/predict", attack)
        done.set()
        th.join()
        after = post(url + "/predict", normal)
        return {"attack_status": status, "attack_seconds": secs,
                "other_client_requests": len(others),
                "other_client_worst_seconds": max((s for _, s in others), default=None),
                "other_client_statuses": sorted({c for c, _ in others}),
                "next_request_after": {"status": after[0], "seconds": after[1]},
                "server_rss_before_mb": base, "server_peak_rss_mb": vm_hwm(proc.pid)}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:  # a worker thread still decoding: no graceful end
            proc.kill()
            proc.wait()


def census(files: Path) -> dict[str, object]:
    """Scans per JPEG in real files on this machine and from the usual encoders."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from make_hostile_images import segments

    from edgeinfer.data.datasets import sample_photos

    def scans(data: bytes) -> int:
        return sum(1 for m, _ in segments(data) if m == 0xDA)

    found = subprocess.run(["find", "/", "-xdev", "(", "-iname", "*.jpg", "-o", "-iname",
                            "*.jpeg", ")", "-size", "+2k"], capture_output=True, text=True)
    local = {}
    for path in found.stdout.split():
        if not any(x in path for x in ("/tmp/", "/proc/", "/hostile/")):
            try:
                local[path] = scans(Path(path).read_bytes())
            except (OSError, AssertionError, struct.error):
                continue
    photo = sample_photos()["coffee"]
    enc = {"opencv baseline": scans(cv2.imencode(".jpg", photo)[1].tobytes()),
           "opencv progressive colour": scans(cv2.imencode(
               ".jpg", photo, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()),
           "opencv progressive gray": scans(cv2.imencode(
               ".jpg", cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY),
               [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes())}
    try:
        import io

        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(photo[:, :, ::-1]).save(buf, "JPEG", progressive=True, optimize=True)
        enc["Pillow progressive optimize"] = scans(buf.getvalue())
    except ImportError:
        pass
    return {"local_files": local, "encoders": enc,
            "max_local": max(local.values(), default=None)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, help="source tree of the old edgeinfer")
    ap.add_argument("--files", type=Path, required=True, help="--full output of make_hostile")
    ap.add_argument("--cases", default="cli,env,serve")
    ap.add_argument("--out", type=Path, default=REPO / "docs/security/hostile_images.json")
    args = ap.parse_args(argv)
    cases = args.cases.split(",")
    prior = json.loads(args.out.read_text()) if args.out.exists() else {}
    res: dict[str, object] = {**prior, "cpu": cpu()}
    exe = [sys.executable, "-m", "edgeinfer", "predict", str(ARTIFACT)]
    photo = args.files / "photo.jpg"
    photo.write_bytes(normal_jpeg())
    if "census" in cases:
        res["jpeg_scan_census"] = census(args.files)
        print("census", res["jpeg_scan_census"], flush=True)
    for label, tree in (("before", args.before), ("after", None)):
        if "cli" in cases:
            for name, path in cli_cases(args.files).items():
                r = run_child([*exe, str(path)], env_for(tree))
                res.setdefault("cli", {}).setdefault(name, {})[label] = r
                print(label, "cli", name, r, flush=True)
        if "env" in cases:
            r = run_child([*exe, str(photo)], env_for(tree, OPENCV_IO_MAX_IMAGE_PIXELS=""))
            res.setdefault("env_empty", {})[label] = r
            print(label, "env", r, flush=True)
        if "worst" in cases:  # what the limits still admit, against a real big photo
            for name, path in worst_cases(args.files).items():
                r = serve_case(tree, path.read_bytes())
                res.setdefault("serve_worst", {}).setdefault(name, {})[label] = r
                print(label, "worst", name, r, flush=True)
        if "serve" in cases:
            for name, path in cli_cases(args.files).items():
                r = serve_case(tree, path.read_bytes())
                res.setdefault("serve", {}).setdefault(name, {})[label] = r
                print(label, "serve", name, r, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
