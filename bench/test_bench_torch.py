"""The PyTorch eager pipeline a user would write without edgeinfer (OpenCV decode, numpy
preprocessing, eval-mode module under inference_mode), on the same input."""

from __future__ import annotations

import pytest

from edgeinfer.check.bench import baselines

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def torch_pipeline(onnx_artifact, threads):
    try:
        net, _src, _weights = baselines.open_torch_baseline(onnx_artifact.meta.provenance,
                                                            onnx_artifact.meta.spec)
    except baselines.Skipped as e:
        pytest.fail(f"the reference model's torch baseline must load: {e}")
    torch.set_num_threads(threads)
    return net, baselines.pipeline_params(onnx_artifact.meta.spec)


def test_torch_eager_e2e(benchmark, torch_pipeline, encoded, expected_top1, model):
    benchmark.group = f"{model}: image -> top-5"
    net, params = torch_pipeline
    cases, _ = baselines.torch_cases(net, encoded, params, (), 5)
    top = benchmark(cases["torch.e2e"])
    assert int(top[0][0]) == expected_top1  # no labels given: the class index as a name


def test_torch_eager_model(benchmark, torch_pipeline, encoded, expected_top1, model):
    benchmark.group = f"{model}: frame -> probabilities"
    net, params = torch_pipeline
    cases, top1 = baselines.torch_cases(net, encoded, params, (), 5)
    assert int(benchmark(cases["torch.model"])[0].argmax()) == expected_top1 == top1
