"""The field monitor's cost: the same Predictor call with and without ``monitor=True``, on
the same artifact and decoded frame (issue 27's budget: at most 3% of predict latency).

The monitored predictor sees the same frame over and over, so its report is not the point
here; the per-call cost is (probabilities into ring buffers, the CUSUM step and the frame
statistics). docs/monitor/overhead.md keeps one run's figures.
"""

from __future__ import annotations

import pytest

from edgeinfer import Predictor


@pytest.fixture(scope="module")
def plain(onnx_path, threads):
    return Predictor(onnx_path, threads=threads)


@pytest.fixture(scope="module")
def monitored(onnx_path, threads):
    p = Predictor(onnx_path, threads=threads, monitor=True)
    assert p.monitor is not None
    return p


def test_predict_monitor_off(benchmark, plain, frame, expected_top1, model):
    benchmark.group = f"{model}: frame -> top-5, monitor off / on"
    assert benchmark(plain.predict, frame, top_k=5)[0].index == expected_top1


def test_predict_monitor_on(benchmark, monitored, frame, expected_top1, model):
    benchmark.group = f"{model}: frame -> top-5, monitor off / on"
    assert benchmark(monitored.predict, frame, top_k=5)[0].index == expected_top1
    assert monitored.monitor.frames > 0
