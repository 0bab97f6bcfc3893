"""The monitor's feature signal: per-channel moments of the first layers as an extra output.

On frames like the training data, the activations of a convolution that absorbed a
BatchNorm have per-channel mean about beta and spread about |gamma|: the doctor's BN fit.
The same moments, measured on the parity frames at convert time, are the reference the
field monitor compares the device's frames with, without the framework and without labels
(issue 27). Measured against the parity frames rather than beta/gamma, the reference holds
for layers with or without BatchNorm and after an activation.

The output is ``edgeinfer_moments`` ``[N, 2 * C]``: for each tapped layer its channels'
spatial means, then their standard deviations. A tap sits after the conv's activation when
the activation is its only consumer, so onnxruntime still fuses conv + activation (a second
consumer of the conv's output would block the fusion and slow the model). Probabilities do
not change: the new nodes only read tensors the model already computes.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeinfer.artifact import MOMENTS_OUTPUT, OUTPUT_NAME, PREFIX_OUTPUT

#: layers tapped (the earliest ones: what the camera changes shows there first)
TAPS = 2
#: activations a tap moves past
ACTIVATIONS = {"Relu", "Clip", "HardSwish", "HardSigmoid", "LeakyRelu", "Sigmoid", "Elu",
               "Selu", "PRelu", "Mish", "Softplus", "Gelu"}


def taps(model: onnx.ModelProto, k: int = TAPS) -> list[str]:
    """The tensors to measure: the first ``k`` model convolutions (not the preprocessing
    prefix's), after their activation where the activation is the only consumer."""
    nodes = list(model.graph.node)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    prefix = _prefix_tensors(nodes)
    out: list[str] = []
    for n in nodes:
        if n.op_type != "Conv" or n.output[0] in prefix:
            continue
        t = n.output[0]
        users = consumers.get(t, [])
        if len(users) == 1 and users[0].op_type in ACTIVATIONS:
            t = users[0].output[0]
        out.append(t)
        if len(out) == k:
            break
    return out


def _prefix_tensors(nodes: list[onnx.NodeProto]) -> set[str]:
    """Tensors computed before (and including) the prefix's output."""
    seen: set[str] = set()
    for n in nodes:
        seen.update(n.output)
        if PREFIX_OUTPUT in n.output:
            return seen
    return set()


def without_moments(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` without the moments output and its nodes (a copy; ``model`` itself when it
    has none). Quantisation and the per-layer int8 diagnosis work on the model alone: the
    moments' reductions are not layers to quantise or to blame."""
    if not any(o.name == MOMENTS_OUTPUT for o in model.graph.output):
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    keep = [n for n in m.graph.node if not n.name.startswith("edgeinfer_mom/")]
    del m.graph.node[:]
    m.graph.node.extend(keep)
    outs = [o for o in m.graph.output if o.name != MOMENTS_OUTPUT]
    del m.graph.output[:]
    m.graph.output.extend(outs)
    inits = [t for t in m.graph.initializer if t.name != "edgeinfer_mom/axes"]
    del m.graph.initializer[:]
    m.graph.initializer.extend(inits)
    return m


def with_moments(model: onnx.ModelProto, k: int = TAPS) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of ``model`` with the ``edgeinfer_moments`` output, and the tapped tensors
    (an empty list, and the model unchanged, when it has no convolution to tap)."""
    names = taps(model, k)
    if not names:
        return model, []
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset >= 18:  # ReduceMean's axes became an input in opset 18 (an attribute before)
        g.initializer.append(numpy_helper.from_array(np.array([2, 3], np.int64),
                                                     "edgeinfer_mom/axes"))

    def mean(x: str, out: str) -> onnx.NodeProto:
        if opset >= 18:
            return helper.make_node("ReduceMean", [x, "edgeinfer_mom/axes"], [out],
                                    keepdims=0, name=out)
        return helper.make_node("ReduceMean", [x], [out], axes=[2, 3], keepdims=0, name=out)

    means, stds = [], []
    for j, t in enumerate(names):
        p = f"edgeinfer_mom/{j}/"
        g.node.extend([
            mean(t, p + "mean"),
            helper.make_node("Mul", [t, t], [p + "sq"], name=p + "sq"),
            mean(p + "sq", p + "msq"),
            helper.make_node("Mul", [p + "mean", p + "mean"], [p + "m2"], name=p + "m2"),
            helper.make_node("Sub", [p + "msq", p + "m2"], [p + "var"], name=p + "var"),
            helper.make_node("Relu", [p + "var"], [p + "varp"], name=p + "varp"),
            helper.make_node("Sqrt", [p + "varp"], [p + "std"], name=p + "std"),
        ])
        means.append(p + "mean")
        stds.append(p + "std")
    g.node.append(helper.make_node("Concat", means + stds, [MOMENTS_OUTPUT], axis=1,
                                   name="edgeinfer_mom/concat"))
    g.output.append(helper.make_tensor_value_info(MOMENTS_OUTPUT, onnx.TensorProto.FLOAT,
                                                  None))
    assert g.output[0].name == OUTPUT_NAME
    return m, names
