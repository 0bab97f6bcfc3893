"""pytest-benchmark suite: artifacts converted once per session, real encoded inputs.

Run with ``python -m pytest bench --benchmark-only`` (``pytest`` alone collects only
``tests/``: this suite converts its own ONNX and TFLite artifacts, minutes on two cores,
so it is not part of CI; its correctness assertions — every path names the same class on
the same real input — are in ``tests/check/test_bench.py`` and
``tests/tflite/test_bench_tflite.py`` on the test suite's shared artifacts). Thread count:
``EDGEINFER_BENCH_THREADS`` (default 2). The benchmarks assert correctness, never timing:
targets and ratios live in the ``edgeinfer bench`` report, where every case is measured
side by side in one run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.check.bench.inputs import BenchArtifact, BenchInput, default_input
from edgeinfer.converter.api import convert
from edgeinfer.converter.sources.reference import get_reference
from edgeinfer.runtime.loader import open_backend
from edgeinfer.spec import PreprocessSpec

MODELS = ("fashion", "efficientnet-lite0")
THREADS = int(os.environ.get("EDGEINFER_BENCH_THREADS", "2"))


def bench_input(model: str) -> BenchInput:
    """The input ``edgeinfer bench`` uses: a frame of the model's parity data at its natural
    size (a 28x28 Fashion-MNIST PNG, or a 640x427 camera JPEG)."""
    spec = PreprocessSpec.from_json(get_reference(model).spec_path.read_text())
    return default_input(ArtifactMetadata(spec, (), {"reference": model}, {}))


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
        if fmt == "tflite":  # the fixed frame size is the input's, so raw LiteRT can run it
            kw = {"format": "tflite", "frame_size": bench_input(model).frame.shape[:2]}
        _cache[key] = convert(model, out, **kw).path
    return _cache[key]


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
def onnx_artifact(onnx_path) -> BenchArtifact:
    return BenchArtifact.open(onnx_path)


@pytest.fixture(scope="session")
def tflite_path(artifact_dir, model) -> Path:
    """The fp32 TFLite artifact, its fixed frame size set to the benchmark input's."""
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("litert_torch")
    return artifact(artifact_dir, model, "tflite")


@pytest.fixture(scope="session")
def inp(model) -> BenchInput:
    return bench_input(model)


@pytest.fixture(scope="session")
def encoded(inp) -> bytes:
    return inp.data


@pytest.fixture(scope="session")
def frame(inp):
    return inp.frame


@pytest.fixture(scope="session")
def expected_top1(onnx_path, frame) -> int:
    """Top-1 of the artifact on the input through its backend: every case must agree."""
    return int(open_backend(onnx_path, threads=1).run(frame[None])[0].argmax())
