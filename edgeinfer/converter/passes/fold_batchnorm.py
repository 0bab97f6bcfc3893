"""Remove every inference-mode BatchNormalization node from an ONNX model.

In inference a BN is a per-channel affine map ``y = x * s + t`` with
``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``. Folding it into the weights of
the linear op that produces ``x`` costs nothing at run time, and it removes an op that
quantisers and edge delegates handle poorly (a BN between a Conv and its activation blocks
Conv+Relu fusion and gets its own badly calibrated int8 range). Where there is nothing to
fold into, the BN becomes Mul+Add with constant ``s`` and ``t``, which every backend runs and
most fuse.

The work, in order:

1. Shape inference on a copy of the model: ranks and dtypes decide the broadcast shape of
   the Mul+Add and whether a MatMul can absorb the BN.
2. Constant folding (onnxscript's ``fold_constants``, which torch.onnx runs when
   ``optimize=True``): exporters compute some weights. torch's dynamo exporter with
   ``optimize=False`` feeds a ``Conv(bias=False)`` a zero bias built from
   ``Expand(CastLike(0, x), Shape(W))``; the rules below want that bias as an initializer.
   The folder also drops what it proves trivial (Identity, inference Dropout); none of it
   changes what the model computes.
3. onnxscript's rewrite rules fuse BN into Conv, ConvTranspose and Gemm. They check that the
   weights are unshared initializers and that the producer's output feeds only the BN.
   They compute in float32 for float32 models: measured within 2 ulp of a float64 fold.
4. What is left is ours: a MatMul(+Add) producer (BatchNorm1d after a Linear exported
   without Gemm), and otherwise Mul+Add. Our arithmetic is float64, cast back once.

onnxscript computes in the parameters' dtype and emits weights of that dtype. That is wrong
when a BN's parameters are float32 and its input float16 (legal since opset 15): the Conv
would get float32 weights for float16 data and the model would not load. Such BNs skip
step 3.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as ir_passes
from onnxscript.optimizer import fold_constants
from onnxscript.rewriter import RewriteRuleSet
from onnxscript.rewriter.rules.common import (
    fuse_batchnorm_into_conv_rule,
    fuse_batchnorm_into_conv_transpose_rule,
    fuse_batchnorm_into_gemm_rule,
)

from edgeinfer.converter.passes.base import GraphPass, PassResult, count_ops
from edgeinfer.errors import ConversionError

_LIBRARY_RULES = RewriteRuleSet(
    [
        fuse_batchnorm_into_conv_rule,
        fuse_batchnorm_into_conv_transpose_rule,
        fuse_batchnorm_into_gemm_rule,
    ]
)
_PARAMETERS = ("scale", "B", "input_mean", "input_var")


class FoldBatchNorm(GraphPass):
    """Fold BatchNormalization into the producing Conv/ConvTranspose/Gemm/MatMul, else Mul+Add.

    Graph inputs, outputs (names included), metadata and opsets are kept. Raises
    ``ConversionError`` for a BN that cannot be removed without changing what the model
    computes: training mode, running-statistics outputs, or non-constant parameters.
    """

    name = "fold_batchnorm"

    def call(self, model: onnx.ModelProto) -> PassResult:
        if count_ops(model, "BatchNormalization") == 0:
            unchanged = onnx.ModelProto()
            unchanged.CopyFrom(model)
            return PassResult(unchanged, modified=False)

        ir_model = ir.serde.deserialize_model(_with_inferred_shapes(model))
        _refuse_batchnorm_in_functions(ir_model)
        fold_constants(ir_model)

        names = _Names(ir_model)
        for bn in _batchnorms(ir_model):
            if _has_mixed_dtypes(bn):
                _fold_ourselves(bn, names)
        _LIBRARY_RULES.apply_to_model(ir_model)
        names = _Names(ir_model)  # the rules created initializers
        for bn in _batchnorms(ir_model):
            _fold_ourselves(bn, names)

        ir_passes.RemoveUnusedNodesPass()(ir_model)
        return PassResult(ir.serde.serialize_model(ir_model), modified=True)


def _with_inferred_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` with value_info filled in where onnx can infer it."""
    try:
        return onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, ValueError):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        return copy


def _refuse_batchnorm_in_functions(model: ir.Model) -> None:
    """Folding inside a model-local function would change every call site; refuse instead."""
    for function in model.functions.values():
        if any(_is_op(node, "BatchNormalization") for node in function):
            raise ConversionError(
                f"BatchNormalization inside local function {function.name!r} cannot be "
                "folded; inline the model's functions first"
            )


def _batchnorms(model: ir.Model) -> list[ir.Node]:
    """All BN nodes of the main graph and its subgraphs, each checked to be foldable."""
    found = [
        node
        for node in ir.traversal.RecursiveGraphIterator(model.graph)
        if _is_op(node, "BatchNormalization")
    ]
    for bn in found:
        _check_foldable(bn)
    return found


def _check_foldable(bn: ir.Node) -> None:
    where = f"BatchNormalization {bn.name or bn.outputs[0].name!r}"
    if bn.attributes.get_int("training_mode", 0):
        raise ConversionError(
            f"{where} has training_mode=1: it normalises with batch statistics, which "
            "cannot be folded; export the model in eval mode"
        )
    outputs = sum(1 for value in bn.outputs if value.name)
    if outputs > 1:
        raise ConversionError(
            f"{where} has {outputs} outputs: running-statistics outputs exist only in "
            "training mode; export the model in eval mode"
        )
    if not bn.attributes.get_int("spatial", 1):
        raise ConversionError(f"{where} has spatial=0 (opset < 9), which is not supported")
    for role, value in zip(_PARAMETERS, bn.inputs[1:], strict=True):
        if _constant(value) is None:
            raise ConversionError(
                f"{where} input {role} ({value.name!r}) is not a constant initializer, so "
                "the BN cannot be folded"
            )


def _fold_ourselves(bn: ir.Node, names: _Names) -> None:
    if not _fold_into_matmul(bn, names):
        _lower_to_mul_add(bn, names)


def _fold_into_matmul(bn: ir.Node, names: _Names) -> bool:
    """Rewrite ``BN(x @ W [+ b])`` as ``x @ (W * s) + (b * s + t)``; False if it does not apply.

    BN normalises axis 1, which is the MatMul's output-feature axis only for 2-D
    activations ``[N, C]``: BatchNorm1d after a Linear exported as MatMul+Add, not Gemm.
    """
    x = bn.inputs[0]
    if _rank(x) != 2 or not _feeds_one_node(x):
        return False
    producer, add, bias = x.producer(), None, None
    if _is_op(producer, "Add"):
        add = producer
        product, addend = add.inputs
        if _constant(addend) is None:
            product, addend = addend, product
        bias = _constant(addend)
        if bias is None or not _feeds_one_node(product):
            return False
        producer = product.producer()
    if not _is_op(producer, "MatMul"):
        return False
    weight = _constant(producer.inputs[1])
    scale, shift = _affine(bn)
    channels = scale.size
    if weight is None or weight.ndim != 2 or weight.shape[1] != channels:
        return False
    if bias is not None and not _broadcasts_to(bias.shape, (1, channels)):
        return False
    old_nodes = [node for node in (producer, add, bn) if node is not None]
    if any(node.graph is not bn.graph for node in old_nodes):
        return False

    graph, out = bn.graph, bn.outputs[0].name
    new_weight = (weight.astype(np.float64) * scale).astype(weight.dtype)
    old_bias = 0.0 if bias is None else np.broadcast_to(bias.astype(np.float64), (1, channels))
    new_bias = (np.reshape(old_bias * scale + shift, channels)).astype(
        weight.dtype if bias is None else bias.dtype
    )
    matmul = ir.Node(
        "",
        "MatMul",
        [producer.inputs[0], _initializer(graph, names.fresh(f"{out}_weight"), new_weight)],
        outputs=[ir.Value(name=names.fresh(f"{out}_matmul"))],
    )
    biased = ir.Node(
        "", "Add", [matmul.outputs[0], _initializer(graph, names.fresh(f"{out}_bias"), new_bias)]
    )
    _replace(bn, old_nodes, [matmul, biased])
    return True


def _lower_to_mul_add(bn: ir.Node, names: _Names) -> None:
    """Replace the BN by ``x * s + t`` with s, t shaped [C, 1, ...] to broadcast over axis 1."""
    x = bn.inputs[0]
    rank = _rank(x)
    if rank is None or rank < 2:
        raise ConversionError(
            f"BatchNormalization {bn.name or bn.outputs[0].name!r}: the rank of its input "
            f"{x.name!r} is unknown, so the per-channel Mul+Add cannot be shaped; give the "
            "model static-rank inputs"
        )
    scale, shift = _affine(bn)
    shape = (-1,) + (1,) * (rank - 2)
    dtype = x.dtype.numpy() if x.dtype is not None else _constant(bn.inputs[1]).dtype
    graph, out = bn.graph, bn.outputs[0].name
    scale = _initializer(graph, names.fresh(f"{out}_scale"), scale.reshape(shape).astype(dtype))
    shift = _initializer(graph, names.fresh(f"{out}_shift"), shift.reshape(shape).astype(dtype))
    scaled = ir.Value(name=names.fresh(f"{out}_scaled"))
    mul = ir.Node("", "Mul", [x, scale], outputs=[scaled])
    add = ir.Node("", "Add", [scaled, shift])
    _replace(bn, [bn], [mul, add])


def _affine(bn: ir.Node) -> tuple[np.ndarray, np.ndarray]:
    """The BN as ``x * scale + shift``, computed in float64."""
    gamma, beta, mean, var = (_constant(value).astype(np.float64) for value in bn.inputs[1:])
    scale = gamma / np.sqrt(var + bn.attributes.get_float("epsilon", 1e-5))
    return scale, beta - mean * scale


def _replace(bn: ir.Node, old_nodes: list[ir.Node], new_nodes: list[ir.Node]) -> None:
    """Swap nodes; the last new node's output takes over the BN output's name and uses."""
    ir.convenience.replace_nodes_and_values(
        bn.graph, bn, old_nodes, new_nodes, [bn.outputs[0]], [new_nodes[-1].outputs[0]]
    )


def _has_mixed_dtypes(bn: ir.Node) -> bool:
    x_dtype = bn.inputs[0].dtype
    return x_dtype is not None and any(
        _constant(value).dtype != x_dtype.numpy() for value in bn.inputs[1:]
    )


def _constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's array if it is a constant that a caller cannot override, else None."""
    if value is None or value.is_graph_input():
        return None
    tensor = ir.convenience.get_const_tensor(value)
    return None if tensor is None else tensor.numpy()


def _rank(value: ir.Value) -> int | None:
    return None if value.shape is None else len(value.shape)


def _feeds_one_node(value: ir.Value) -> bool:
    return len(value.uses()) == 1 and not value.is_graph_output()


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        return np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def _is_op(node: ir.Node | None, op_type: str) -> bool:
    return node is not None and node.op_type == op_type and node.domain in ("", "ai.onnx")


def _initializer(graph: ir.Graph, name: str, array: np.ndarray) -> ir.Value:
    value = ir.Value(
        name=name,
        shape=ir.Shape(array.shape),
        type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
        const_value=ir.tensor(array, name=name),
    )
    graph.register_initializer(value)
    return value


class _Names:
    """Fresh value names: initializers and node outputs share one namespace in ONNX."""

    def __init__(self, model: ir.Model) -> None:
        self._used = {value.name for value in model.graph.inputs}
        self._used.update(model.graph.initializers)
        for node in ir.traversal.RecursiveGraphIterator(model.graph):
            self._used.update(v.name for v in (*node.inputs, *node.outputs) if v is not None)

    def fresh(self, base: str) -> str:
        name, suffix = base, 0
        while name in self._used:
            suffix += 1
            name = f"{base}_{suffix}"
        self._used.add(name)
        return name
