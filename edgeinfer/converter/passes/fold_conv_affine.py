"""Fold a per-channel ``Mul`` (and ``Add``) of constants that follows a Conv into the Conv.

Why: tf2onnx folds a Keras BatchNormalization into the Conv2D before it, but a BN after a
DepthwiseConv2D arrives as ``Conv(group=C) -> Mul(s) -> Add(t)``: the BN in disguise.
Left alone it is two extra ops per block and, in int8, two more tensors with their own
badly calibrated ranges between the conv and its activation. ``Conv(W, b) * s + t`` equals
``Conv(W * s[o], b * s + t)`` for a per-output-channel ``s``, ``t``; the fold is done in
float64 and cast back once.

Only exact cases are touched: the Conv has constant weights (and bias) used by it alone,
its output feeds only the Mul, the Mul's other input is a constant that broadcasts over
the channel axis only (shape ``[C]``-like after NCHW alignment, or a scalar), and the Add
(when folded) likewise.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edgeinfer.converter.passes.base import GraphPass, PassResult


class FoldConvAffine(GraphPass):
    name = "fold-conv-affine"

    def call(self, model: onnx.ModelProto) -> PassResult:
        out = onnx.ModelProto()
        out.CopyFrom(model)
        g = out.graph
        changed = False
        while _fold_one(g):
            changed = True
        return PassResult(out, changed)


def _consumers(g: onnx.GraphProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in g.node if name in n.input]


def _init(g: onnx.GraphProto, name: str) -> onnx.TensorProto | None:
    return next((t for t in g.initializer if t.name == name), None)


def _uses(g: onnx.GraphProto, name: str) -> int:
    return sum(list(n.input).count(name) for n in g.node) + sum(
        o.name == name for o in g.output)


def _channel_vector(arr: np.ndarray, channels: int) -> np.ndarray | None:
    """``arr`` as a length-``channels`` vector if it broadcasts over NCHW's axis 1 only."""
    if arr.ndim > 4:
        return None
    shape = (1,) * (4 - arr.ndim) + arr.shape
    if shape[0] != 1 or shape[2] != 1 or shape[3] != 1 or shape[1] not in (1, channels):
        return None
    return np.broadcast_to(arr.reshape(-1).astype(np.float64), (channels,))


def _const_operand(g: onnx.GraphProto, node: onnx.NodeProto, other: str
                   ) -> tuple[str, np.ndarray] | None:
    ins = list(node.input)
    if len(ins) != 2 or other not in ins:
        return None
    name = ins[1] if ins[0] == other else ins[0]
    t = _init(g, name)
    return None if t is None else (name, numpy_helper.to_array(t))


def _fold_one(g: onnx.GraphProto) -> bool:
    for conv in g.node:
        if conv.op_type != "Conv" or len(conv.input) < 2:
            continue
        w_t = _init(g, conv.input[1])
        b_t = _init(g, conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        if w_t is None or w_t.data_type != onnx.TensorProto.FLOAT or _uses(g, w_t.name) != 1:
            continue
        if len(conv.input) > 2 and conv.input[2] and (b_t is None or _uses(g, b_t.name) != 1):
            continue
        y = conv.output[0]
        users = _consumers(g, y)
        if len(users) != 1 or users[0].op_type != "Mul" or any(o.name == y for o in g.output):
            continue
        mul = users[0]
        w = numpy_helper.to_array(w_t).astype(np.float64)
        o = w.shape[0]
        got = _const_operand(g, mul, y)
        s = None if got is None else _channel_vector(got[1], o)
        if s is None:
            continue
        b = (numpy_helper.to_array(b_t).astype(np.float64) if b_t is not None
             else np.zeros(o))
        w = w * s.reshape(-1, 1, 1, 1)
        b = b * s
        last = mul
        add_users = _consumers(g, mul.output[0])
        if (len(add_users) == 1 and add_users[0].op_type == "Add"
                and not any(x.name == mul.output[0] for x in g.output)):
            got_t = _const_operand(g, add_users[0], mul.output[0])
            t = None if got_t is None else _channel_vector(got_t[1], o)
            if t is not None:
                b = b + t
                last = add_users[0]
        w_t.CopyFrom(numpy_helper.from_array(w.astype(np.float32), w_t.name))
        bias_name = b_t.name if b_t is not None else f"{conv.name or y}_folded_bias"
        new_b = numpy_helper.from_array(b.astype(np.float32), bias_name)
        if b_t is not None:
            b_t.CopyFrom(new_b)
        else:
            g.initializer.append(new_b)
            while len(conv.input) < 3:
                conv.input.append("")
            conv.input[2] = bias_name
        conv.output[0] = last.output[0]
        for n in {id(mul): mul, id(last): last}.values():
            g.node.remove(n)
        _drop_unused_initializers(g)
        return True
    return False


def _drop_unused_initializers(g: onnx.GraphProto) -> None:
    used = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    keep = [t for t in g.initializer if t.name in used]
    del g.initializer[:]
    g.initializer.extend(keep)
