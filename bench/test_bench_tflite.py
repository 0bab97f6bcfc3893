"""LiteRT fp32 artifacts through the Predictor and through the raw signature runner."""

from __future__ import annotations

from edgeinfer import Predictor


def test_tflite_predictor_e2e(benchmark, tflite_path, threads, jpeg, expected_top1, model):
    benchmark.group = f"{model}: JPEG -> top-5"
    p = Predictor(tflite_path, threads=threads)
    assert benchmark(p.predict, jpeg, top_k=5)[0].index == expected_top1


def test_tflite_raw_model(benchmark, tflite_path, threads, frame, expected_top1, model):
    benchmark.group = f"{model}: frame -> probabilities"
    from ai_edge_litert.interpreter import Interpreter

    run = Interpreter(model_path=str(tflite_path), num_threads=threads).get_signature_runner(
        "frame")
    x = frame[None]
    assert int(benchmark(run, frame=x)["probs"][0].argmax()) == expected_top1
