"""Fuzz ``load_image`` with structure-aware mutations of JPEG, PNG, TIFF, WebP and GIF.

    python tools/fuzz_images.py --budget 600 [--seed 1] [--max-megapixels 4] [--out DIR]

Why a separate process per batch: a decoder that aborts (SIGABRT, SIGSEGV) would take the
fuzzer down with it and hide the case that did it. Cases are generated here
(tools/image_mutations.py, seeded with real encodings and the issue-31 regression files)
and decoded by a worker child (``--worker``); a worker killed by a signal, or silent past
the time bound, is a finding: the case is written to ``--out`` and a fresh worker goes on.

Asserted for every case (what ``check`` and the worker report):

* the outcome is a decoded uint8 ``H x W x 3`` frame, or an ``ImageError`` whose message
  is one line; any other exception is a finding;
* "the decoder read" (the probe and the decoder disagreed on the size) is a finding: the
  probe must read the header the decoder reads;
* no signal; at most ``TIME_BOUND_S`` per case (a hang detector, 50x the slowest real
  decode at the default 4 MP limit);
* the decode's peak RSS above the worker's RSS before it (VmHWM, reset per case through
  /proc/self/clear_refs) at most :func:`rss_bound`: three frames at the pixel limit (the
  frame, plus a progressive JPEG's coefficient buffer of up to two frames) + 64 MiB.

Exit 0 when nothing was found, 1 otherwise; ``--json`` prints the summary as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import select
import struct
import subprocess
import sys
import time
from pathlib import Path

import edgeinfer  # noqa: F401 - before cv2: sets OpenCV's decoder limit, as in production

sys.path.insert(0, str(Path(__file__).resolve().parent))

from image_mutations import mutate, seeds  # noqa: E402

TIME_BOUND_S = 20.0
SLACK = 64 * 2**20


def rss_bound(max_pixels: int) -> int:
    return 3 * 3 * max_pixels + SLACK


def check(data: bytes, max_pixels: int) -> tuple[str, str]:
    """("decoded" | "refused" | "bad" | "desync", detail) for one case, in this process."""
    import numpy as np

    from edgeinfer.errors import ImageError
    from edgeinfer.runtime.image import load_image
    from edgeinfer.spec import PreprocessSpec

    try:
        img = load_image(data, PreprocessSpec(size=(28, 28)), max_pixels)
    except ImageError as e:
        msg = str(e)
        if "\n" in msg or not msg:
            return "bad", f"{type(e).__name__} message is not one line: {msg[:200]!r}"
        if "the decoder read" in msg:
            return "desync", msg
        return "refused", type(e).__name__
    except Exception as e:  # noqa: BLE001 - exactly what the fuzzer looks for
        return "bad", f"{type(e).__name__}: {str(e)[:200]}"
    if not (isinstance(img, np.ndarray) and img.dtype == np.uint8 and img.ndim == 3
            and img.shape[2] == 3 and img.flags.c_contiguous):
        return "bad", f"decoded to {type(img).__name__} {getattr(img, 'shape', None)}"
    return "decoded", f"{img.shape[1]}x{img.shape[0]}"


def _status(field: str) -> int:
    m = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(m[1]) * 1024 if m else 0


def worker(max_pixels: int) -> None:
    """Read length-prefixed cases on stdin, answer one JSON line each on stdout."""
    import edgeinfer.runtime.image  # noqa: F401 - loaded before the first RSS baseline

    stdin, stdout = sys.stdin.buffer, sys.stdout
    while True:
        head = stdin.read(4)
        if len(head) < 4:
            return
        data = stdin.read(struct.unpack("<I", head)[0])
        with contextlib.suppress(OSError):  # reset VmHWM to the current RSS
            Path("/proc/self/clear_refs").write_text("5")
        base = _status("VmRSS")
        t0 = time.perf_counter()
        outcome, detail = check(data, max_pixels)
        peak = _status("VmHWM") - base
        stdout.write(json.dumps({"outcome": outcome, "detail": detail, "peak": peak,
                                 "seconds": round(time.perf_counter() - t0, 3)}) + "\n")
        stdout.flush()


class Worker:
    def __init__(self, max_pixels: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--max-megapixels", str(max_pixels / 1e6)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def run(self, data: bytes, timeout: float) -> dict[str, object]:
        assert self.proc.stdin and self.proc.stdout
        try:
            self.proc.stdin.write(struct.pack("<I", len(data)) + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else b""
        if line:
            return json.loads(line)
        if not ready:
            self.proc.kill()
            self.proc.wait()
            return {"outcome": "timeout", "detail": f"no answer within {timeout:g} s"}
        rc = self.proc.wait()
        return {"outcome": "signal" if rc < 0 else "exit", "detail": f"worker exit {rc}"}

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def fuzz(budget_s: float, seed: int, max_pixels: int, out: Path | None = None,
         max_cases: int | None = None) -> dict[str, object]:
    """Mutate and decode until the budget is spent; the summary, findings included."""
    rng = random.Random(seed)
    pool = seeds()
    names = sorted(pool)
    counts: dict[str, int] = {}
    findings: list[dict[str, object]] = []
    bound = rss_bound(max_pixels)
    w = Worker(max_pixels)
    n = 0
    worst_s, worst_peak = 0.0, 0
    t_end = time.monotonic() + budget_s
    try:
        while time.monotonic() < t_end and (max_cases is None or n < max_cases):
            name = names[n % len(names)] if n < len(names) else rng.choice(names)
            data = pool[name] if n < len(names) else mutate(name, pool[name], rng)
            r = w.run(data, TIME_BOUND_S)
            n += 1
            outcome = str(r["outcome"])
            counts[outcome] = counts.get(outcome, 0) + 1
            peak = int(r.get("peak", 0))
            worst_s = max(worst_s, float(r.get("seconds", 0)))
            worst_peak = max(worst_peak, peak)
            bad = outcome not in ("decoded", "refused") or peak > bound
            if bad:
                finding = {"case": n, "seed_file": name, "size": len(data), **r}
                if out is not None:
                    out.mkdir(parents=True, exist_ok=True)
                    path = out / f"finding-{seed}-{n}-{outcome}.bin"
                    path.write_bytes(data)
                    finding["file"] = str(path)
                findings.append(finding)
            if outcome in ("timeout", "signal", "exit"):
                w.close()
                w = Worker(max_pixels)
            elif outcome == "decoded" and rng.random() < 0.2 and len(data) < 2**20:
                pool[f"{name}+{n}"] = data  # a decodable mutant: mutate it further later
                names.append(f"{name}+{n}")
    finally:
        w.close()
    return {"cases": n, "seconds": budget_s, "seed": seed, "max_pixels": max_pixels,
            "outcomes": counts, "worst_case_seconds": worst_s,
            "worst_peak_rss_mb": round(worst_peak / 2**20, 1),
            "rss_bound_mb": round(bound / 2**20, 1), "time_bound_s": TIME_BOUND_S,
            "findings": findings}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=60.0, help="seconds of fuzzing")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-megapixels", type=float, default=4.0)
    ap.add_argument("--max-cases", type=int)
    ap.add_argument("--out", type=Path, help="where to write the findings' files")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    max_pixels = int(args.max_megapixels * 1e6)
    if args.worker:
        worker(max_pixels)
        return 0
    s = fuzz(args.budget, args.seed, max_pixels, args.out, args.max_cases)
    if args.json:
        print(json.dumps(s))
    else:
        print(f"{s['cases']} cases in {args.budget:g} s (seed {args.seed}): {s['outcomes']}; "
              f"worst {s['worst_case_seconds']} s, peak +{s['worst_peak_rss_mb']} MB "
              f"(bound {s['rss_bound_mb']} MB); {len(s['findings'])} findings")
        for f in s["findings"]:
            print(f"  {f}")
    return 1 if s["findings"] else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
