"""The PyTorch eager pipeline a user would write without edgeinfer (OpenCV decode, numpy
preprocessing, eval-mode module under inference_mode), on the same input."""

from __future__ import annotations

import pytest

from edgeinfer.check.bench import load_torch_model, pipeline_params, torch_source, user_preprocess

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def torch_pipeline(onnx_path, threads):
    from edgeinfer.runtime.inspect import read_metadata

    meta = read_metadata(onnx_path)
    src = torch_source(meta.provenance)
    if src is None:
        pytest.skip("no torch source for this artifact")
    torch.set_num_threads(threads)
    return load_torch_model(*src), pipeline_params(meta.spec)


def test_torch_eager_e2e(benchmark, torch_pipeline, jpeg, expected_top1, model):
    benchmark.group = f"{model}: JPEG -> top-5"
    net, params = torch_pipeline

    def run():
        x = torch.from_numpy(user_preprocess(jpeg, params))
        with torch.inference_mode():
            return torch.topk(torch.softmax(net(x), -1)[0], 5).indices.tolist()

    assert benchmark(run)[0] == expected_top1


def test_torch_eager_model(benchmark, torch_pipeline, jpeg, expected_top1, model):
    benchmark.group = f"{model}: frame -> probabilities"
    net, params = torch_pipeline
    x = torch.from_numpy(user_preprocess(jpeg, params))

    def run():
        with torch.inference_mode():
            return net(x)

    assert int(benchmark(run)[0].argmax()) == expected_top1
