"""pytest-benchmark suite: artifacts converted once per session, real encoded inputs.

Run with ``python -m pytest bench --benchmark-only`` (the main test run collects only
``tests/``). Thread count: ``EDGEINFER_BENCH_THREADS`` (default 2). These benchmarks assert
correctness (the same top-1 everywhere), never timing: targets and ratios live in the
``edgeinfer bench`` report, where every case is measured side by side in one run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeinfer.check.bench import decode, default_image
from edgeinfer.convert.api import convert

MODELS = ("fashion", "efficientnet-lite0")
THREADS = int(os.environ.get("EDGEINFER_BENCH_THREADS", "2"))


@pytest.fixture(scope="session")
def artifact_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench-artifacts")


_cache: dict[tuple[str, str], Path] = {}


def artifact(directory: Path, model: str, fmt: str = "onnx") -> Path:
    """Convert ``model`` once per session (the real converter, parity gate included)."""
    key = (model, fmt)
    if key not in _cache:
        out = directory / f"{model}.{fmt}"
        kw = {}
        if fmt == "tflite":
            data = default_image(_parity_data(model))[1]
            kw = {"format": "tflite", "frame_size": decode(data, "BGR").shape[:2]}
        _cache[key] = convert(model, out, **kw).path
    return _cache[key]


def _parity_data(model: str) -> str:
    return "fashion-test" if model == "fashion" else "photos"


@pytest.fixture(scope="session", params=MODELS)
def model(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def threads() -> int:
    return THREADS


@pytest.fixture(scope="session")
def onnx_path(artifact_dir, model) -> Path:
    return artifact(artifact_dir, model)


@pytest.fixture(scope="session")
def tflite_path(artifact_dir, model) -> Path:
    """The fp32 .tflite, its fixed frame size set to the benchmark input's."""
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("litert_torch")
    return artifact(artifact_dir, model, "tflite")


@pytest.fixture(scope="session")
def jpeg(model) -> bytes:
    """A real JPEG: a Fashion-MNIST test image, or a 640x427 camera photo."""
    return default_image(_parity_data(model))[1]


@pytest.fixture(scope="session")
def frame(jpeg):
    return decode(jpeg, "BGR")


@pytest.fixture(scope="session")
def expected_top1(onnx_path, frame) -> int:
    """Top-1 of the artifact on the input, by plain onnxruntime: every case must agree."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return int(sess.run(None, {"frame": frame[None]})[0][0].argmax())
