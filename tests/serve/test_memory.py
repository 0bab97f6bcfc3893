"""RSS after one 24 MP frame returns to within 50 MB of the steady state (onnxruntime's CPU
arena is shrunk after a large run; before, it kept the frame's ~580 MB peak for the life of
the process). Run in a fresh interpreter so nothing else in the test process moves RSS."""

from __future__ import annotations

import json
import subprocess
import sys

CHILD = r"""
import json, sys
import numpy as np
from edgeinfer.runtime.predictor import Predictor

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) / 1024 for l in f if l.startswith("VmRSS"))

pred = Predictor(sys.argv[1], threads=1)
rng = np.random.default_rng(0)
small = [rng.integers(0, 256, (480, 640, 3), np.uint8) for _ in range(4)]
for _ in range(5):
    for f in small:
        pred.predict_probs(f)
steady = rss_mb()
big = rng.integers(0, 256, (4000, 6000, 3), np.uint8)
pred.predict_probs(big)
del big
for _ in range(5):
    for f in small:
        pred.predict_probs(f)
print(json.dumps({"steady": steady, "after": rss_mb()}))
"""


def test_rss_returns_after_a_24_megapixel_frame(fashion_artifact) -> None:
    out = subprocess.run([sys.executable, "-c", CHILD, str(fashion_artifact)],
                         capture_output=True, text=True, timeout=120, check=True)
    rss = json.loads(out.stdout.strip().splitlines()[-1])
    assert rss["after"] - rss["steady"] < 50, rss
