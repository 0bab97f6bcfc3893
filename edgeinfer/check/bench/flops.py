"""FLOPs of an artifact's model, counted from its graph (the preprocessing prefix excluded).

2 x multiply-adds of the convolutions and matrix products, the layers that dominate a CNN
and that a matmul peak is a fair ceiling for. ONNX: shapes come from onnx shape inference
on the model part of the graph (behind the baked-in prefix, whose output size the spec
fixes), so nothing is run. TFLite: shapes are read from LiteRT's op table of the file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from edgeinfer.spec import PreprocessSpec


def _prod(s: Sequence[int]) -> int:
    return math.prod(int(v) for v in s)


def _dims(t: Any) -> tuple[int, ...] | None:
    dims = t.type.tensor_type.shape.dim
    if not dims or any(not d.HasField("dim_value") for d in dims):
        return None
    return tuple(d.dim_value for d in dims)


def onnx_flops(model: bytes, spec: PreprocessSpec) -> float | None:
    """FLOPs of one frame through the ONNX artifact's model part; None if not countable.

    Needs the ``onnx`` package (imported here: ``check`` runs on lean installs too)."""
    try:
        import onnx
        from onnx import TensorProto, helper
    except ImportError:
        return None
    from edgeinfer.converter.preprocess_graph import PREFIX_NODE_PREFIX, PREFIX_OUTPUT

    m = onnx.load_model_from_string(model)
    g = m.graph
    ends = [i for i, n in enumerate(g.node)
            if n.name.startswith(PREFIX_NODE_PREFIX) or PREFIX_OUTPUT in n.output]
    if not ends:
        return None  # not an edgeinfer artifact graph: no prefix boundary to start from
    # The prefix ends with its last node (nodes are in topological order); quantisation may
    # drop the Identity that names it. The prefix region is what depends on the frame but
    # not on that boundary; everything else (weights and their DequantizeLinear) is core.
    boundary = g.node[max(ends)].output[0]
    on_frame, on_boundary = {g.input[0].name}, {boundary}
    core = []
    for n in g.node:
        if any(i in on_boundary for i in n.input):
            on_boundary.update(n.output)
            core.append(n)
        elif any(i in on_frame for i in n.input):
            on_frame.update(n.output)
        else:
            core.append(n)
    shape = [1, *spec.model_input_shape()[1:]]
    sub = helper.make_graph(core, "core",
                            [helper.make_tensor_value_info(boundary, TensorProto.FLOAT, shape)],
                            list(g.output), list(g.initializer))
    sub_model = helper.make_model(sub, opset_imports=list(m.opset_import))
    sub_model.ir_version = m.ir_version
    try:
        inferred = onnx.shape_inference.infer_shapes(sub_model).graph
    except Exception:  # noqa: BLE001 - a graph shape inference cannot follow has no count
        return None
    shapes = {v.name: _dims(v) for v in [*inferred.value_info, *inferred.output]}
    inits = {i.name: tuple(i.dims) for i in g.initializer}
    producer = {o: n for n in core for o in n.output}

    def weight(name: str) -> tuple[int, ...] | None:
        for _ in range(4):  # through DequantizeLinear / Identity / Cast
            if name in inits:
                return inits[name]
            n = producer.get(name)
            if n is None or n.op_type not in ("DequantizeLinear", "Identity", "Cast"):
                return None
            name = n.input[0]
        return None

    macs = 0
    for n in core:
        if n.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        w, out = weight(n.input[1]), shapes.get(n.output[0])
        if w is None or out is None:
            continue
        if n.op_type == "Conv":
            macs += _prod(out) * _prod(w[1:])
        elif n.op_type == "Gemm":
            trans_b = any(a.name == "transB" and a.i for a in n.attribute)
            macs += _prod(out) * (w[1] if trans_b else w[0])
        else:
            macs += _prod(out) * w[-2]
    return 2.0 * macs or None


def tflite_flops(model: bytes, spec: PreprocessSpec) -> float | None:
    """FLOPs of CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED ops, from LiteRT's op table.

    The prefix's colour conversion is a FULLY_CONNECTED with a [model channels, frame
    channels] weight on the 4-D frame (a classifier's dense layer takes 2-D input): it is
    left out, as in :func:`onnx_flops`. The interpreter only reads the file's structure
    here; timing runs go through the backend. ``_get_ops_details`` is LiteRT's (private) op
    listing: without it, no count."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_content=model)
        shapes = {t["index"]: tuple(t["shape"]) for t in it.get_tensor_details()}
        ops = it._get_ops_details()
    except Exception:  # noqa: BLE001 - private API or old LiteRT: no count
        return None
    colour = (spec.model_channels, spec.frame_channels)
    macs = 0
    for op in ops:
        name, ins, outs = op["op_name"], list(op["inputs"]), list(op["outputs"])
        if len(ins) < 2 or not outs or ins[1] not in shapes or outs[0] not in shapes:
            continue
        w, out = shapes[ins[1]], shapes[outs[0]]
        if name == "CONV_2D":
            macs += _prod(out) * _prod(w[1:])
        elif name == "DEPTHWISE_CONV_2D":
            macs += _prod(out) * _prod(w[1:3])
        elif name == "FULLY_CONNECTED" and not (len(shapes[ins[0]]) == 4 and w == colour):
            macs += _prod(out) * w[-1]
    return 2.0 * macs or None


def artifact_flops(model: bytes, fmt: str, spec: PreprocessSpec) -> float | None:
    """FLOPs of one frame for an artifact of format ``fmt`` (``onnx`` / ``tflite``)."""
    return tflite_flops(model, spec) if fmt == "tflite" else onnx_flops(model, spec)


__all__ = ["artifact_flops", "onnx_flops", "tflite_flops"]
