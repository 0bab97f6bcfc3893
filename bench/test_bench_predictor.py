"""edgeinfer Predictor vs the raw onnxruntime session on the same artifact and input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeinfer import Predictor
from edgeinfer.check.bench.baselines import raw_runner
from edgeinfer.parity.tolerances import tolerance


@pytest.fixture(scope="module")
def predictor(onnx_path, threads):
    return Predictor(onnx_path, threads=threads)


@pytest.fixture(scope="module")
def raw(onnx_artifact, threads):
    """The deliberate raw baseline: ``onnxruntime.InferenceSession.run`` as a user calls it."""
    return raw_runner(onnx_artifact, threads)


def test_predictor_e2e(benchmark, predictor, encoded, expected_top1, model):
    """Encoded image -> top-5 through the Predictor."""
    benchmark.group = f"{model}: image -> top-5"
    top = benchmark(predictor.predict, encoded, top_k=5)
    assert top[0].index == expected_top1


def test_raw_session_e2e(benchmark, raw, encoded, expected_top1, model):
    """Encoded image -> top-5 as a user writes it with onnxruntime alone."""
    benchmark.group = f"{model}: image -> top-5"

    def run():
        img = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
        return np.argsort(-raw(img[None])[0])[:5]

    assert int(benchmark(run)[0]) == expected_top1


def test_predictor_model(benchmark, predictor, frame, expected_top1, model):
    """A decoded frame -> top-5 through the Predictor."""
    benchmark.group = f"{model}: frame -> probabilities"
    assert benchmark(predictor.predict, frame, top_k=5)[0].index == expected_top1


def test_raw_session_model(benchmark, raw, frame, expected_top1, model):
    """A decoded frame -> probabilities with session.run alone."""
    benchmark.group = f"{model}: frame -> probabilities"
    x = frame[None]
    assert int(benchmark(raw, x)[0].argmax()) == expected_top1


def test_predictor_tta(benchmark, predictor, encoded, frame, model):
    """Two-view TTA: both views in one batched session call; its probabilities are the mean
    of the two views run alone (within the batch-consistency tolerance)."""
    benchmark.group = f"{model}: image -> top-5"
    p = Predictor.from_backend(predictor.backend, tta="hflip")
    top = benchmark(p.predict, encoded, top_k=5)
    mean = (predictor.predict_probs(frame) + predictor.predict_probs(frame[:, ::-1].copy())) / 2
    assert top[0].index == int(mean.argmax())
    assert abs(top[0].probability - float(mean.max())) <= tolerance("consistency",
                                                                    "batch").max_abs
