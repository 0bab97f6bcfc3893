"""AdaRound on onnxruntime's QDQ model: new int8 weights, same graph, same scales.

Why here: docs/int8/reconstruction.md measured AdaRound as the one reconstruction that lifts
EfficientNet-Lite0 to >= 99% agreement with every layer int8, and onnxruntime's QDQ graph as
the one that keeps int8's speed (0.53x fp32); this module puts the first on the second,
without a library: only the int8 weight initialisers change (each element moves by at most
one step from round-to-nearest), so the graph, its scales and onnxruntime's fusions stay.

How, per compute layer (Conv, Gemm, MatMul whose weight is an int8 initialiser behind a
DequantizeLinear), in graph order:
(a) the quantised model's input to that layer (the DequantizeLinear output feeding it) and
(b) the fp32 model's output of the same layer (pre-activation, bias included) on the
calibration frames, both read from onnxruntime with those tensors added as graph outputs;
then :func:`edgeinfer.converter.int8.adaround.adaround_layer`, and the result is written
into the initialiser. Sequentially: each layer's input is read with every earlier layer's
new rounding in place, from only the part of the model that computes it; the fp32 targets
are read for as many consecutive layers at once as fit ``MEMORY`` bytes, so memory stays
bounded by that budget and the cap on frames, not by the model's size.

The fp32 model given must be the one onnxruntime quantised (``OnnxInt8.pre``): node names
match the QDQ model's, and its initialisers hold the float weights.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from edgeinfer.artifact import INPUT_NAME
from edgeinfer.progress import Progress

#: calibration frames the rounding is fitted on: at least FRAMES (EfficientNet-Lite0: 64 with
#: 500 steps 99.25% on 936 photos it was not fitted on, 32 with 200 steps 98.72%), more
#: while the largest layer output stays within FRAME_BYTES, at most MAX_FRAMES (the
#: fashion model: 256 frames 99.68% on its 10k test images, 32 frames 99.61%)
FRAMES, MAX_FRAMES, FRAME_BYTES = 64, 256, 160 * 2**20
MEMORY = 384 * 2**20  # activations held at once (inputs + targets of one chunk of layers)
COMPUTE = ("Conv", "Gemm", "MatMul")


@dataclass
class Layer:
    """One quantised compute layer: where its int8 weight lives and how it computes."""

    node: str
    op: str
    weight_init: str  # the int8 initialiser behind the weight's DequantizeLinear
    scale: np.ndarray
    qinput: str  # the quantised model's tensor feeding the layer (a DequantizeLinear output)
    output: str  # the layer's output tensor (same name in the fp32 model)
    float_weight: np.ndarray  # (O, I/g, kh, kw) or (O, I)
    bias: np.ndarray | None
    attrs: dict[str, Any]
    finput: str  # the fp32 model's tensor feeding the layer
    fweight: str  # the fp32 model's weight initialiser
    transposed: bool = False  # MatMul: the ONNX weight is (I, O)
    activation: tuple[float, float] | None = None  # a ReLU / Clip right after it
    output_quant: tuple[float, int, int, int] | None = None  # its QuantizeLinear, if one


def layers(qdq: onnx.ModelProto, fp32: onnx.ModelProto) -> list[Layer]:
    """The QDQ model's int8 compute layers, in graph order, with their fp32 weights."""
    producer = {o: n for n in qdq.graph.node for o in n.output}
    qinit = {i.name: i for i in qdq.graph.initializer}
    finit = {i.name: i for i in fp32.graph.initializer}
    fnodes = {n.name: n for n in fp32.graph.node}
    out = []
    for n in qdq.graph.node:
        if n.op_type not in COMPUTE or n.name not in fnodes or len(n.input) < 2:
            continue
        dq = producer.get(n.input[1])
        xdq = producer.get(n.input[0])
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in qinit \
                or xdq is None or xdq.op_type != "DequantizeLinear":
            continue  # float weight or float input: not an int8 layer
        wq = numpy_helper.to_array(qinit[dq.input[0]])
        zp = numpy_helper.to_array(qinit[dq.input[2]]) if len(dq.input) > 2 and \
            dq.input[2] in qinit else np.zeros(1, np.int8)
        if wq.dtype != np.int8 or np.any(zp != 0) or dq.input[1] not in qinit:
            continue  # AdaRound here is for symmetric int8 weights
        f = fnodes[n.name]
        if f.input[1] not in finit:
            continue
        w = numpy_helper.to_array(finit[f.input[1]]).astype(np.float32)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        transposed = False
        if n.op_type == "Conv":
            if w.ndim != 4 or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
                continue
        elif n.op_type == "Gemm":
            if attrs.get("transA", 0) or w.ndim != 2:
                continue
            if not attrs.get("transB", 0):
                w, transposed = w.T, True
        else:  # MatMul: (I, O)
            if w.ndim != 2:
                continue
            w, transposed = w.T, True
        scale = numpy_helper.to_array(qinit[dq.input[1]]).astype(np.float32).reshape(-1)
        if scale.size not in (1, w.shape[0]):
            continue  # per-channel on the wrong axis for this layout
        bias = None
        if len(f.input) > 2 and f.input[2] in finit:
            bias = numpy_helper.to_array(finit[f.input[2]]).astype(np.float32).reshape(-1)
        if bias is not None and bias.size != w.shape[0]:
            continue  # a broadcast bias AdaRound's row model does not cover
        out.append(Layer(n.name, n.op_type, dq.input[0], scale, n.input[0], f.output[0],
                         np.ascontiguousarray(w), bias, attrs, f.input[0], f.input[1],
                         transposed, _activation(fp32, f.output[0], finit),
                         _output_quant(qdq, n.output[0], qinit)))
    return out


def _output_quant(qdq: onnx.ModelProto, out: str, qinit: dict[str, onnx.TensorProto],
                  ) -> tuple[float, int, int, int] | None:
    """(scale, zero point, qmin, qmax) of the one per-tensor QuantizeLinear on ``out``."""
    users = [n for n in qdq.graph.node if out in n.input]
    if len(users) != 1 or users[0].op_type != "QuantizeLinear" or len(users[0].input) < 3 \
            or users[0].input[1] not in qinit or users[0].input[2] not in qinit:
        return None
    s = numpy_helper.to_array(qinit[users[0].input[1]])
    z = numpy_helper.to_array(qinit[users[0].input[2]])
    if s.size != 1 or z.dtype not in (np.uint8, np.int8):
        return None
    info = np.iinfo(z.dtype)
    return float(s), int(z), int(info.min), int(info.max)


def _activation(fp32: onnx.ModelProto, out: str,
                finit: dict[str, onnx.TensorProto]) -> tuple[float, float] | None:
    """(low, high) of the ReLU or Clip that alone consumes ``out``, else None."""
    users = [n for n in fp32.graph.node if out in n.input]
    if len(users) != 1 or out in {o.name for o in fp32.graph.output}:
        return None
    u = users[0]
    if u.op_type == "Relu":
        return (0.0, float("inf"))
    if u.op_type != "Clip":
        return None
    bounds = [-float("inf"), float("inf")]
    for k, name in enumerate(u.input[1:3]):
        if name and name in finit:
            bounds[k] = float(numpy_helper.to_array(finit[name]))
        elif name:
            return None  # a bound computed at run time
    for a in u.attribute:  # opset < 11
        if a.name in ("min", "max"):
            bounds[a.name == "max"] = float(a.f)
    return bounds[0], bounds[1]


def adaround_qdq(qdq: onnx.ModelProto, fp32: onnx.ModelProto, frames: Sequence[np.ndarray],
                 *, iterations: int | None = None, max_frames: int | None = None,
                 memory: int = MEMORY, seed: int = 0, inputs: str = "quantised",
                 reduce_range: bool | None = None, output_quant: bool = False,
                 say: Progress | None = None,
                 ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """AdaRound every int8 compute layer of ``qdq`` (changed in place); returns the new int8
    weights by the layer's node name (to write into later builds of the same quantisation:
    :func:`apply_rounding`) and the record for the provenance.

    ``frames``: CALIBRATION frames only (the artifact's uint8 input); the first
    ``max_frames`` are used (default: as many as ``FRAME_BYTES`` allows).
    ``iterations``: AdaRound's steps per layer. ``inputs``:
    what each layer's fit is fed: ``quantised`` (the QDQ model's own input to the layer,
    Quark's default and the better measured: fashion 99.68% vs 99.59% on the 10k test
    images, EfficientNet-Lite0 98.80% vs 98.50% on its 1000 photos) or ``float`` (AIMET's:
    the fp32 model with the int8 weights chosen so far, activations float).
    ``reduce_range``: 7-bit weights (default: what the model's ``edgeinfer.quantization``
    settings say). ``output_quant``: fit through the layer's output requantisation (Quark's
    module does); docs/int8/adaround.md measures it.
    """
    import onnxruntime as ort
    from onnxruntime.quantization.quant_utils import get_qmin_qmax_for_qType

    from edgeinfer.converter.int8.adaround import ITERATIONS, adaround_layer, versus_nearest

    say = say or (lambda _m: None)
    iterations = ITERATIONS if iterations is None else iterations
    t0, c0 = time.perf_counter(), time.process_time()
    settings = json.loads({p.key: p.value for p in qdq.metadata_props}.get(
        "edgeinfer.quantization", "{}"))
    qmin, qmax = (int(v) for v in get_qmin_qmax_for_qType(
        onnx.TensorProto.INT8, reduce_range=bool(settings.get("reduce_range", False)
                                                 if reduce_range is None else reduce_range),
        symmetric=True))
    todo = layers(qdq, fp32)
    fr = [f if f.ndim == 3 else f[..., None]
          for f in list(frames)[:max(MAX_FRAMES, max_frames or 0)]]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    fsess = ort.InferenceSession(_with_outputs(fp32, [ly.output for ly in todo]),
                                 opts, providers=["CPUExecutionProvider"])
    sizes = _sizes(fsess, todo, fr[:1])  # bytes per frame
    if max_frames is None:
        max_frames = max(FRAMES, min(MAX_FRAMES, FRAME_BYTES // max(sizes, default=1)))
    fr = fr[:max_frames]
    sizes = [b * len(fr) for b in sizes]
    say(f"adaround: {len(todo)} int8 layers, {iterations} steps each, on {len(fr)} "
        f"calibration frames")
    qinit = {i.name: i for i in qdq.graph.initializer}
    rounding: dict[str, np.ndarray] = {}
    per_layer: list[dict[str, Any]] = []
    targets: dict[str, np.ndarray] = {}
    for i, ly in enumerate(todo):
        if ly.output not in targets:  # the fp32 outputs of the next layers, within MEMORY
            targets.clear()
            chunk, used = [ly.output], sizes[i]
            while i + len(chunk) < len(todo) and used + sizes[i + len(chunk)] <= memory:
                used += sizes[i + len(chunk)]
                chunk.append(todo[i + len(chunk)].output)
            targets.update(zip(chunk, _collect(fsess, chunk, fr), strict=True))
        # the layer's input, with every earlier layer's rounding: sequential, layer by layer
        # (fitting a few layers on one collection, fashion: 99.54% -> 98.80%, the second
        # layer learns to undo an error the first one's new rounding no longer makes)
        src, name = ((qdq, ly.qinput) if inputs == "quantised" else
                     (_fake_quantised(fp32, todo[:i], rounding), ly.finput))
        x = _collect(ort.InferenceSession(_upto(src, name), opts,
                                          providers=["CPUExecutionProvider"]), [name], fr)[0]
        del src
        t1 = time.perf_counter()
        st: dict[str, Any] = {}
        a = ly.attrs
        kw: dict[str, Any] = {"kind": "linear"} if ly.op != "Conv" else {
            "kind": "conv", "stride": tuple(a.get("strides", (1, 1))),
            "pads": tuple(a.get("pads", (0, 0, 0, 0))),
            "dilation": tuple(a.get("dilations", (1, 1))), "group": int(a.get("group", 1))}
        q = adaround_layer(ly.float_weight, ly.scale, x, targets.pop(ly.output), bias=ly.bias,
                           qmin=qmin, qmax=qmax, iterations=iterations, seed=seed, stats=st,
                           activation=ly.activation,
                           output_quant=ly.output_quant if output_quant else None, **kw)
        del x
        q = q.T if ly.transposed else q
        qinit[ly.weight_init].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(q),
                                                               ly.weight_init))
        rounding[ly.node] = q
        st.update(node=ly.node, seconds=round(time.perf_counter() - t1, 2))
        per_layer.append(st)
        say(f"adaround {i + 1}/{len(todo)} {ly.weight_init.removesuffix('_quantized')}: "
            f"{versus_nearest(st)}, {st['steps']} steps, {time.perf_counter() - t0:.0f} s")
    record = {"method": "adaround", "iterations": iterations, "frames": len(fr),
              "layers": len(todo), "seconds": round(time.perf_counter() - t0, 1),
              "cpu_seconds": round(time.process_time() - c0, 1),
              "changed_weights": int(sum(s["changed"] for s in per_layer)),
              "weights": int(sum(s["weights"] for s in per_layer)),
              "kept_nearest": [s["node"] for s in per_layer if s["kept_nearest"]],
              "inputs": inputs, "output_quant": output_quant,
              "order": "sequential, layer by layer"}
    return rounding, record


def apply_rounding(model: onnx.ModelProto, rounding: dict[str, np.ndarray]) -> int:
    """Write the rounding chosen by :func:`adaround_qdq` into another build of the same
    quantisation (the accuracy control re-quantises with some layers float; those still int8
    keep their AdaRound weights). A layer whose int8 weight has another shape is skipped.
    Returns how many layers were written."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {i.name: i for i in model.graph.initializer}
    done = 0
    for n in model.graph.node:
        q = rounding.get(n.name)
        dq = producer.get(n.input[1]) if q is not None and len(n.input) > 1 else None
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in inits:
            continue
        init = inits[dq.input[0]]
        if tuple(init.dims) != q.shape or init.data_type != onnx.TensorProto.INT8:
            continue
        init.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(q), init.name))
        done += 1
    return done


def _fake_quantised(fp32: onnx.ModelProto, done: list[Layer],
                    rounding: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The fp32 model with the int8 weights chosen so far, dequantised (weights-only
    quantisation: what AIMET feeds each layer's fit)."""
    m = onnx.ModelProto()
    m.CopyFrom(fp32)
    inits = {i.name: i for i in m.graph.initializer}
    for ly in done:
        q = rounding[ly.node]
        q = q.T if ly.transposed else q
        w = (q.astype(np.float32) * ly.scale.reshape((-1,) + (1,) * (q.ndim - 1)))
        w = w.T if ly.transposed else w
        inits[ly.fweight].CopyFrom(numpy_helper.from_array(w.astype(np.float32), ly.fweight))
    return m


def _with_outputs(model: onnx.ModelProto, names: Sequence[str]) -> bytes:
    """The model with ``names`` added as graph outputs (serialised for onnxruntime)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    have = {o.name for o in m.graph.output}
    for name in dict.fromkeys(names):
        if name not in have:
            m.graph.output.append(onnx.ValueInfoProto(name=name))
    return m.SerializeToString()


def _sizes(fsess: Any, todo: list[Layer], frames: list[np.ndarray]) -> list[int]:
    """Bytes of each layer's fp32 output on all ``frames``, measured on the first."""
    outs = fsess.run([ly.output for ly in todo], {INPUT_NAME: frames[0][None]})
    return [int(o.nbytes) * len(frames) for o in outs]


def _upto(model: onnx.ModelProto, name: str) -> bytes:
    """The part of ``model`` that computes ``name`` (its only output), serialised: the input
    of an early layer then costs an early part of the model, not all of it."""
    producer = {o: n for n in model.graph.node for o in n.output}
    seen: set[int] = set()
    stack = [name]
    while stack:
        n = producer.get(stack.pop())
        if n is not None and id(n) not in seen:
            seen.add(id(n))
            stack.extend(n.input)
    nodes = [n for n in model.graph.node if id(n) in seen]
    used = {i for n in nodes for i in n.input}
    g = onnx.helper.make_graph(
        nodes, model.graph.name, [i for i in model.graph.input if i.name in used],
        [onnx.ValueInfoProto(name=name)],
        initializer=[i for i in model.graph.initializer if i.name in used])
    m = onnx.helper.make_model(g, opset_imports=model.opset_import, ir_version=model.ir_version)
    return m.SerializeToString()


def _collect(sess: Any, names: list[str], frames: list[np.ndarray]) -> list[np.ndarray]:
    """``names`` on every frame, one frame at a time (frames may differ in size: the
    artifact's prefix resizes them), stacked along the batch axis."""
    got: list[list[np.ndarray]] = [[] for _ in names]
    for f in frames:
        for acc, o in zip(got, sess.run(names, {INPUT_NAME: f[None]}), strict=True):
            acc.append(o.astype(np.float32, copy=False))
    return [np.concatenate(a) for a in got]
