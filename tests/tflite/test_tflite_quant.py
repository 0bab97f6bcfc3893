"""int8 details on a tiny net: a "dead" channel (BN gamma ~ 0 after folding) keeps its bias."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from edgeinfer.converter.export import tflite_torch as te
from edgeinfer.converter.export.tflite_metadata import embed_metadata
from edgeinfer.converter.int8 import tflite_quant as tq
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.spec import PreprocessSpec

SPEC = PreprocessSpec(size=(16, 16), frame_color="BGR", model_color="RGB",
                      mean=(0.5,), std=(0.25,))


class _DeadChannelNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        with torch.no_grad():
            self.conv.weight[0].fill_(1e-9)  # dead channel: its output is its bias
            self.conv.bias.copy_(torch.tensor([1.5, 0.1, -0.2, 0.05]))
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean(dim=(2, 3)))


@pytest.mark.slow  # a TFLite conversion (litert-torch traces it): the quick lane converts ONNX only
def test_dead_channel_bias_survives_int8() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (16, 16, 3), np.uint8) for _ in range(32)]
    net = _DeadChannelNet().eval()
    props = {"edgeinfer.format_version": "1", "edgeinfer.spec": SPEC.to_json(),
             "edgeinfer.labels": '["a", "b", "c"]'}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32 = te.convert_float(net, SPEC, (16, 16))
        q = tq.quantize_int8(fp32, SPEC, (16, 16), frames)
    a = ArtifactRunner(embed_metadata(fp32, props)).run(frames)
    b = ArtifactRunner(embed_metadata(q, props)).run(frames)
    assert np.abs(a - b).max() < 0.02
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.9


@pytest.mark.slow  # a TFLite conversion (litert-torch traces it): the quick lane converts ONNX only
def test_fix_bias_overflow_rescales_only_what_overflows() -> None:
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, (16, 16, 3), np.uint8) for _ in range(16)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fp32 = te.convert_float(_DeadChannelNet().eval(), SPEC, (16, 16))
        before = tq.fix_bias_overflow
        seen = {}

        def spy(f, q):
            out, n = before(f, q)
            seen["n"] = n
            seen["again"] = before(f, out)[1]
            return out, n

        tq.fix_bias_overflow = spy
        try:
            tq.quantize_int8(fp32, SPEC, (16, 16), frames)
        finally:
            tq.fix_bias_overflow = before
    # the dead conv channel, in each of the two signatures' (unshared) bias copies
    assert seen["n"] >= 1
    assert seen["again"] == 0  # idempotent: nothing overflows any more
