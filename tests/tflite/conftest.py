"""Real .tflite artifacts, converted once per test session by the real converter.

Conversions are the slow part (litert-torch traces each signature; EfficientNet-Lite0
takes about a minute on two cores), so every artifact here is a session fixture.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from edgeinfer.converter.api import ConversionResult, convert


def _convert(tmp_path_factory: pytest.TempPathFactory, name: str, tag: str,
             **kw) -> ConversionResult:
    out: Path = tmp_path_factory.mktemp("tflite") / f"{name}-{tag}.tflite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # litert-torch / torchao import chatter
        return convert(name, out, format="tflite", **kw)


@pytest.fixture(scope="session")
def fashion_tflite(tmp_path_factory) -> ConversionResult:
    """fp32, parity-checked on all 10,000 Fashion-MNIST test images."""
    return _convert(tmp_path_factory, "fashion", "fp32")


@pytest.fixture(scope="session")
def fashion_tflite_fp16(tmp_path_factory) -> ConversionResult:
    return _convert(tmp_path_factory, "fashion", "fp16", quantize="fp16")


@pytest.fixture(scope="session")
def fashion_tflite_int8(tmp_path_factory) -> ConversionResult:
    """int8, calibrated on 256 fashion *train* images, checked on the 10k test images."""
    return _convert(tmp_path_factory, "fashion", "int8", quantize="int8")


@pytest.fixture(scope="session")
def effnet_tflite(tmp_path_factory) -> ConversionResult:
    """fp32 EfficientNet-Lite0, frame size 224x224, parity on the sample photos."""
    return _convert(tmp_path_factory, "efficientnet-lite0", "fp32")


@pytest.fixture(scope="session")
def plain_fashion_tflite(tmp_path_factory) -> Path:
    """A third-party-style .tflite: the bare fashion net (float NCHW in, logits out),
    converted with litert-torch directly, without edgeinfer metadata or preprocessing."""
    import litert_torch
    import torch

    from edgeinfer.converter.frontend_torch import load_factory, load_weights
    from edgeinfer.converter.reference import get_reference

    ref = get_reference("fashion")
    model = load_factory(ref.factory())()
    load_weights(model, ref.weights())
    model.eval()
    out = tmp_path_factory.mktemp("byo") / "fashion_plain.tflite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        litert_torch.convert(model, (torch.zeros(1, 1, 28, 28),)).export(str(out))
    return out
