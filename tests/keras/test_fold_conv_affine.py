"""FoldConvAffine: Conv -> Mul(const) -> Add(const) (a BN after a depthwise conv, as tf2onnx
leaves it) folds into the conv exactly; anything not per-channel is left alone."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgeinfer.converter.passes.fold_conv_affine import FoldConvAffine
from edgeinfer.parity.tolerances import tolerance


def _model(mul_shape: tuple[int, ...], group: int = 4, bias: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    c = 4
    w = rng.normal(size=(c, c // group, 3, 3)).astype(np.float32)
    inits = [numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(rng.uniform(0.5, 2, mul_shape).astype(np.float32), "s"),
             numpy_helper.from_array(rng.normal(size=mul_shape).astype(np.float32), "t")]
    conv_in = ["x", "w"]
    if bias:
        inits.append(numpy_helper.from_array(rng.normal(size=c).astype(np.float32), "b"))
        conv_in.append("b")
    nodes = [helper.make_node("Conv", conv_in, ["y"], group=group, pads=[1, 1, 1, 1],
                              name="dw"),
             helper.make_node("Mul", ["y", "s"], ["z"]),
             helper.make_node("Add", ["z", "t"], ["out"])]
    g = helper.make_graph(nodes, "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def _run(m: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    s = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    return s.run(None, {"x": x})[0]


def test_depthwise_conv_mul_add_folds_exactly():
    x = np.random.default_rng(1).normal(size=(1, 4, 8, 8)).astype(np.float32)
    for shape, bias in (((4, 1, 1), False), ((1, 4, 1, 1), True), ((1,), False)):
        m = _model(shape, bias=bias)
        res = FoldConvAffine().call(m)
        assert res.modified
        assert [n.op_type for n in res.model.graph.node] == ["Conv"]
        diff = np.abs(_run(m, x) - _run(res.model, x)).max()
        assert diff <= tolerance("bn_fold", "fp32").max_abs * np.abs(_run(m, x)).max()
        assert [n.op_type for n in m.graph.node] == ["Conv", "Mul", "Add"]  # input untouched


def test_spatially_varying_mul_is_not_folded():
    m = _model((1, 4, 8, 8))
    res = FoldConvAffine().call(m)
    assert not res.modified
    assert [n.op_type for n in res.model.graph.node] == ["Conv", "Mul", "Add"]
