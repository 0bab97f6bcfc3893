"""What the field monitor adds to a prediction: one Predictor, its monitor swapped per call.

    python tools/monitor_overhead.py FASHION.onnx EFFICIENTNET.onnx [--out docs/monitor]

Each artifact needs a monitor profile (``edgeinfer convert`` writes one). Cases run
interleaved by the one timing harness (runtime/timing.py) on the same Predictor and frame,
so only the monitor differs: off, the Predictor's default (frame statistics on one frame in
4), statistics on every frame, and one frame in 8 monitored. Writes overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edgeinfer import Predictor  # noqa: E402
from edgeinfer.data.datasets import load_fashion_mnist, sample_photos  # noqa: E402
from edgeinfer.data.frames import to_frame_color  # noqa: E402
from edgeinfer.runtime.monitor import Monitor  # noqa: E402
from edgeinfer.runtime.timing import interleaved  # noqa: E402


def cases(path: str, frame: np.ndarray) -> dict:
    p = Predictor(path, threads=1, monitor=True)
    prof = p.monitor.profile
    variants = {"off": None, "default (statistics on 1 frame in 4)": p.monitor,
                "statistics on every frame": Monitor(prof, stats_every=1),
                "1 frame in 8 monitored": Monitor(prof, stats_every=4, sample_every=8)}

    def call(m):
        def run() -> None:
            p._monitor = m
            p.predict(frame, top_k=5)
        return run

    return {k: call(m) for k, m in variants.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("fashion")
    ap.add_argument("efficientnet")
    ap.add_argument("--out", default=str(ROOT / "docs/monitor"))
    a = ap.parse_args()
    frames = {a.fashion: to_frame_color(load_fashion_mnist("test")[0][0], "BGR"),
              a.efficientnet: sample_photos()["china"]}
    runs = {a.fashion: 4000, a.efficientnet: 600}
    flags = subprocess.run("grep -o -m1 -E 'avx2|avx512f|avx512_vnni' /proc/cpuinfo | sort -u",
                           shell=True, capture_output=True, text=True).stdout.split()
    rows = []
    for path, frame in frames.items():
        c = cases(path, frame)
        ms = interleaved(c, {k: runs[path] for k in c}, warmup=50, rounds=50)
        base = float(np.median(ms["off"]))
        for k, v in ms.items():
            med = float(np.median(v))
            rows.append({"artifact": Path(path).name, "frame": f"{frame.shape[1]}x{frame.shape[0]}",
                         "case": k, "median_us": round(med * 1e3, 1),
                         "added_us": round((med - base) * 1e3, 1),
                         "added_pct": round(100 * (med - base) / base, 2)})
    meta = {"cpu_flags": flags, "load": os.getloadavg()[0], "threads": 1}
    out = Path(a.out)
    (out / "overhead.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    md = ["# Field monitor overhead", "",
          f"`tools/monitor_overhead.py`, 1 thread, CPU flags {' '.join(flags)}, load "
          f"{meta['load']:.1f}; medians of interleaved calls of `Predictor.predict(frame)`.", "",
          "| artifact | frame | monitor | median (us) | added (us) | added |",
          "|---|---|---|---|---|---|"]
    md += [f"| {r['artifact']} | {r['frame']} | {r['case']} | {r['median_us']} | "
           f"{r['added_us']:+} | {r['added_pct']:+.1f}% |" for r in rows]
    (out / "overhead.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
