"""Antialiased (Pillow) resizing in a TFLite artifact: litert-torch has no lowering for
torch's antialiased interpolate, so the fixed-size ``frame`` signature bakes the filter
taps as GATHER/MUL/ADD builtins; frames of other sizes are resized on the host by the
same numpy filter (the ``resized`` signature). Both must match the reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edgeinfer import PreprocessSpec
from edgeinfer.parity.tolerances import tolerance

# litert_torch and TensorFlow are imported inside the converter, never at collection: a
# framework loaded while every test module is collected broke an unrelated server test
# (stderr lost under pytest's capture); both are installed by scripts/setup, no skip.


@pytest.mark.slow  # a TFLite conversion (quick lane budget)
def test_antialiased_cubic_frame_signature_converts_and_matches(photos) -> None:
    from ai_edge_litert.interpreter import Interpreter

    from edgeinfer.converter.export.tflite_torch import export_tflite

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3)).eval()
    spec = PreprocessSpec(size=(64, 64), resize="shorter_crop", resize_shorter=73,
                          interpolation="cubic", antialias=True, size_rounding="floor",
                          crop_rounding="half_even", mean=(0.485, 0.456, 0.406),
                          std=(0.229, 0.224, 0.225))
    frame = photos["china"]
    it = Interpreter(model_content=export_tflite(model, spec, frame.shape[:2], None, []))
    ops = {d["op_name"] for d in it._get_ops_details()}
    assert "GATHER" in ops or "GATHER_ND" in ops
    with torch.inference_mode():
        want = torch.softmax(model(torch.from_numpy(spec.reference(frame))), -1).numpy()
    got = it.get_signature_runner("frame")(frame=frame[None])["probs"]
    assert np.abs(got - want).max() <= tolerance("tflite", "fp32").max_abs
    other = photos["chelsea"]  # another size: the host resizes with the same filter
    geo = spec.geometry()(other)
    got2 = it.get_signature_runner("resized")(resized=geo)["probs"]
    with torch.inference_mode():
        want2 = torch.softmax(model(torch.from_numpy(spec.reference(other))), -1).numpy()
    assert np.abs(got2 - want2).max() <= tolerance("tflite", "fp32").max_abs
