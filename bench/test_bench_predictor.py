"""edgeinfer Predictor vs the raw onnxruntime session on the same artifact and input."""

from __future__ import annotations

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from edgeinfer import Predictor


@pytest.fixture(scope="module")
def predictor(onnx_path, threads):
    return Predictor(onnx_path, threads=threads)


@pytest.fixture(scope="module")
def session(onnx_path, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    return ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])


def test_predictor_e2e(benchmark, predictor, jpeg, expected_top1, model):
    """JPEG bytes -> top-5 through the Predictor."""
    benchmark.group = f"{model}: JPEG -> top-5"
    top = benchmark(predictor.predict, jpeg, top_k=5)
    assert top[0].index == expected_top1


def test_raw_session_e2e(benchmark, session, jpeg, expected_top1, model):
    """JPEG bytes -> top-5 as a user writes it with onnxruntime alone."""
    benchmark.group = f"{model}: JPEG -> top-5"

    def run():
        img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        probs = session.run(None, {"frame": img[None]})[0][0]
        return np.argsort(-probs)[:5]

    assert int(benchmark(run)[0]) == expected_top1


def test_predictor_model(benchmark, predictor, frame, expected_top1, model):
    """A decoded frame -> top-5 through the Predictor."""
    benchmark.group = f"{model}: frame -> probabilities"
    assert benchmark(predictor.predict, frame, top_k=5)[0].index == expected_top1


def test_raw_session_model(benchmark, session, frame, expected_top1, model):
    """A decoded frame -> probabilities with session.run alone."""
    benchmark.group = f"{model}: frame -> probabilities"
    x = frame[None]
    probs = benchmark(session.run, None, {"frame": x})[0]
    assert int(probs[0].argmax()) == expected_top1


@pytest.mark.parametrize("policy", ["hflip"])
def test_predictor_tta(benchmark, predictor, jpeg, model, policy):
    """Two-view TTA: both views in one batched session call."""
    benchmark.group = f"{model}: JPEG -> top-5"
    p = Predictor.from_backend(predictor.backend, tta=policy)
    top = benchmark(p.predict, jpeg, top_k=5)
    assert len(top) == 5 and 0.0 <= top[0].probability <= 1.0
