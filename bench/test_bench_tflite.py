"""LiteRT fp32 artifacts through the Predictor and through the raw signature runner."""

from __future__ import annotations

from edgeinfer import Predictor
from edgeinfer.check.bench.baselines import raw_runner
from edgeinfer.check.bench.inputs import BenchArtifact


def test_tflite_predictor_e2e(benchmark, tflite_path, threads, encoded, expected_top1, model):
    benchmark.group = f"{model}: image -> top-5"
    p = Predictor(tflite_path, threads=threads)
    assert benchmark(p.predict, encoded, top_k=5)[0].index == expected_top1


def test_tflite_raw_model(benchmark, tflite_path, threads, frame, expected_top1, model):
    benchmark.group = f"{model}: frame -> probabilities"
    run = raw_runner(BenchArtifact.open(tflite_path), threads)
    assert int(benchmark(run, frame[None])[0].argmax()) == expected_top1
