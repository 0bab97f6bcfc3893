"""Per-layer int8 diagnosis: the first layer of a QDQ artifact whose error jumps.

When an int8 ONNX step of the ladder fails, knowing *where* the error appears is what the
user needs (a saturated first conv, a dead channel with a huge weight scale, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeinfer.artifact import INPUT_NAME


@dataclass
class LayerError:
    index: int
    tensor: str  # the fp32 tensor name
    layer: str  # readable: the producing layer's weight name or node name
    op_type: str
    rel_error: float  # ||int8 - fp32|| / ||fp32|| over the frames

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Int8Layers:
    frames: int
    layers: list[LayerError]
    first_jump: LayerError | None
    worst: LayerError | None
    jump_factor: float
    floor: float

    @property
    def message(self) -> str:
        if not self.layers:
            return "no quantised layer could be matched between the fp32 and int8 models"
        if self.first_jump is not None:
            j = self.first_jump
            prev = max((e.rel_error for e in self.layers[:j.index]), default=0.0)
            return (f"first layer whose int8 error jumps: {j.layer} ({j.op_type}, tensor "
                    f"'{j.tensor}'): relative error {j.rel_error:.1%} after at most {prev:.1%} "
                    "in the layers before it")
        w = self.worst
        return (f"no single layer jumps (>{self.jump_factor:g}x); the error grows gradually "
                f"to {w.rel_error:.1%} at {w.layer}" if w else "no error measured")

    def to_dict(self) -> dict[str, Any]:
        return {"frames": self.frames, "message": self.message,
                "first_jump": self.first_jump.to_dict() if self.first_jump else None,
                "worst": self.worst.to_dict() if self.worst else None,
                "jump_factor": self.jump_factor, "floor": self.floor,
                "layers": [e.to_dict() for e in self.layers]}


ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh")


def _layer_name(tensor: str, producer: dict[str, Any], inits: set[str]) -> tuple[str, str]:
    """A readable layer name: the weight name of the Conv/Gemm/MatMul that produced the
    tensor (directly or through one activation); "Add after <layer>" for residual adds and
    other ops fed by one; else the node name."""
    node = producer[tensor]
    for n in (node, producer.get(node.input[0]) if node.input else None):
        if n is not None and n.op_type in ("Conv", "Gemm", "MatMul", "ConvTranspose"):
            w = next((i for i in n.input[1:] if i in inits), None)
            name = w.removesuffix(".weight") if w else n.name
            if n is node:
                return name, n.op_type
            if node.op_type in ACTIVATIONS:
                return name, f"{n.op_type}+{node.op_type}"
            return f"{node.op_type} after {name}", node.op_type
    return node.name or tensor, node.op_type


def int8_layers(fp32_model: bytes, int8_model: bytes, frames: Sequence[np.ndarray],
                  max_frames: int = 8, jump_factor: float = 3.0,
                  floor: float = 0.05) -> Int8Layers:
    """Compare every quantised activation of an int8 QDQ artifact with its fp32 tensor.

    The QDQ model keeps each quantised activation's fp32 name as the input of its
    QuantizeLinear; we expose the Q output (integer) and dequantise it here, not the DQ
    output, because a DQ feeding a graph output would stop onnxruntime from fusing the
    next layer into an integer kernel, and the numbers measured would not be the ones
    deployed (the probabilities stay bitwise identical with these extra outputs). Layers in
    topological order; the first whose relative error exceeds ``jump_factor`` times every
    earlier one (and ``floor``) is named.
    """
    import onnx
    import onnxruntime as ort
    from onnx import helper, numpy_helper

    from edgeinfer.converter.moments import without_moments

    f = without_moments(onnx.load_model_from_string(fp32_model))
    q = without_moments(onnx.load_model_from_string(int8_model))
    q_inits = {i.name: i for i in q.graph.initializer}
    f_prod = {o: n for n in f.graph.node for o in n.output}
    order = {o: i for i, n in enumerate(f.graph.node) for o in n.output}
    pairs = []
    for n in q.graph.node:
        t = n.input[0] if n.op_type == "QuantizeLinear" else None
        if t is None or t in q_inits or t not in f_prod:
            continue
        if n.input[1] not in q_inits or len(n.input) < 3 or n.input[2] not in q_inits:
            continue
        scale = numpy_helper.to_array(q_inits[n.input[1]]).astype(np.float64)
        zp = numpy_helper.to_array(q_inits[n.input[2]])
        if scale.size != 1:
            continue  # activations are per-tensor; skip anything else
        pairs.append((t, n.output[0], float(scale.reshape(())), zp))
    pairs.sort(key=lambda p: order[p[0]])
    f_inits = {i.name for i in f.graph.initializer}
    for t, tq, _s, zp in pairs:
        f.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
        q.graph.output.append(helper.make_tensor_value_info(
            tq, helper.np_dtype_to_tensor_dtype(zp.dtype), None))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sf = ort.InferenceSession(f.SerializeToString(), so, providers=["CPUExecutionProvider"])
    sq = ort.InferenceSession(q.SerializeToString(), so, providers=["CPUExecutionProvider"])
    num, den = np.zeros(len(pairs)), np.zeros(len(pairs))
    use = list(frames[:max_frames])
    for fr in use:
        x = (fr if fr.ndim == 3 else fr[..., None])[None]
        of, oq = sf.run(None, {INPUT_NAME: x})[1:], sq.run(None, {INPUT_NAME: x})[1:]
        for i, (_t, _tq, s, zp) in enumerate(pairs):
            a = of[i].astype(np.float64)
            b = (oq[i].astype(np.float64) - float(zp.reshape(-1)[0])) * s
            if a.shape != b.shape:
                continue
            num[i] += float(((a - b) ** 2).sum())
            den[i] += float((a ** 2).sum())
    layers = []
    for i, (t, _tq, _s, _zp) in enumerate(pairs):
        if den[i] <= 0:
            continue
        name, op = _layer_name(t, f_prod, f_inits)
        if t == "edgeinfer_pixels" or t.startswith("edgeinfer_pre/"):
            name, op = "model input (after the float preprocessing)", "input"
        layers.append(LayerError(len(layers), t, name, op, float(np.sqrt(num[i] / den[i]))))
    first, prev = None, floor / jump_factor
    for e in layers:
        if e.rel_error > max(floor, jump_factor * prev):
            first = e
            break
        prev = max(prev, e.rel_error)
    worst = max(layers, key=lambda e: e.rel_error, default=None)
    return Int8Layers(len(use), layers, first, worst, jump_factor, floor)
