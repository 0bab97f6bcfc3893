"""AdaRound on the full-integer .tflite that ai_edge_quantizer writes (issue 26, point 3).

Why: ai_edge_quantizer rounds every int8 weight to nearest (per-channel symmetric, narrow
range -127..127). AdaRound (:mod:`edgeinfer.converter.int8.adaround`, the format-free core)
chooses, per weight, floor or floor+1 so that the layer's output on the calibration frames
matches the fp32 model's, with the fp32 model as the teacher and no labels. Only the int8
weight buffers change: scales, zero points, biases and the graph stay the quantiser's, so
the result is the same file ai_edge_quantizer would write with better roundings.

How, for each CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED with per-channel int8 weights,
in graph order (sequentially: each layer sees the earlier layers' new rounding): its input
as the quantised model feeds it, read from LiteRT as deployed (:class:`_Activations`); the
fp32 teacher's pre-activation output, rebuilt in torch from the float model's input to the
same layer (matched by weight tensor name; TFLite fuses ReLU/ReLU6 into the op's output);
TFLite layouts and SAME padding turned into the core's torch layout and explicit pads; the
returned int8 weights written into the buffer both signatures (``frame``, ``resized``)
share. docs/int8/adaround_tflite.md has the measurements.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeinfer.errors import ConversionError
from edgeinfer.progress import Progress

#: the ops whose weights are rounded
WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: frames the rounding is fitted on; a fully connected layer has one output row per frame,
#: not one per position, so it gets more (on 64 the core's guard refused fashion's head)
FRAMES = 64
LINEAR_FRAMES = 256
#: fp32 layer inputs held at once (read a chunk of consecutive layers per fp32 pass)
MEMORY = 384 * 2**20
#: ai_edge_quantizer's symmetric 8-bit weights are narrow range
QMIN, QMAX = -127, 127

#: TFLite's fused activations (schema.ActivationFunctionType RELU, RELU_N1_TO_1, RELU6) as
#: the core's (low, high): the output error is measured after them, as the model sees it
FUSED = {1: (0.0, float("inf")), 2: (-1.0, 1.0), 3: (0.0, 6.0)}

RoundFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Layer:
    """One weighted op of a subgraph, with what the rounding needs to know about it."""

    op: str  # CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED
    x: int  # input tensor index
    w: int  # weight tensor index
    b: int | None  # bias tensor index
    out: int  # output tensor index
    stride: tuple[int, int]
    dilation: tuple[int, int]
    same: bool  # SAME padding (else VALID)
    activation: int  # schema.ActivationFunctionType of the fused activation

    @property
    def kind(self) -> str:
        return "linear" if self.op == "FULLY_CONNECTED" else "conv"


def _schema() -> tuple[Any, Any]:
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    return schema, flatbuffer_utils


def read_model(model: bytes) -> Any:
    """The flatbuffer as LiteRT's object API (``ModelT``), for reading and writing back."""
    _, fbu = _schema()
    return fbu.read_model_from_bytearray(bytearray(model))


def write_model(obj: Any) -> bytes:
    _, fbu = _schema()
    return bytes(fbu.convert_object_to_bytearray(obj))


def layers(obj: Any, subgraph: int, int8_only: bool = True) -> list[Layer]:
    """The weighted ops of one subgraph in graph order (with int8 weights and an int8 input
    when ``int8_only``: what a full-integer model quantised; float islands are skipped)."""
    schema, fbu = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    sg = obj.subgraphs[subgraph]
    out: list[Layer] = []
    for op in sg.operators:
        code = names.get(fbu.get_builtin_code_from_operator_code(
            obj.operatorCodes[op.opcodeIndex]), "")
        if code not in WEIGHTED or len(op.inputs) < 2:
            continue
        tx, tw = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]]
        if int8_only and not (tw.type == schema.TensorType.INT8
                              and tx.type == schema.TensorType.INT8
                              and obj.buffers[tw.buffer].data is not None):
            continue
        o = op.builtinOptions
        conv = code != "FULLY_CONNECTED"
        out.append(Layer(
            op=code, x=op.inputs[0], w=op.inputs[1],
            b=op.inputs[2] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None,
            out=op.outputs[0],
            stride=(o.strideH, o.strideW) if conv else (1, 1),
            dilation=(o.dilationHFactor, o.dilationWFactor) if conv else (1, 1),
            same=conv and o.padding == schema.Padding.SAME,
            activation=int(o.fusedActivationFunction) if o is not None else 0))
    return out


def pairs(qobj: Any, sg_q: int, fobj: Any, sg_f: int) -> list[tuple[Layer, Layer]]:
    """(int8 layer, the float model's same layer) in graph order, matched by the weight
    tensor's name (ai_edge_quantizer keeps names; op indices move with the QUANTIZE ops it
    inserts). Float-only ops (the preprocessing prefix) have no int8 partner."""
    ft = fobj.subgraphs[sg_f].tensors
    by_weight = {ft[lay.w].name: lay for lay in layers(fobj, sg_f, int8_only=False)}
    qt = qobj.subgraphs[sg_q].tensors
    return [(lay, by_weight[qt[lay.w].name]) for lay in layers(qobj, sg_q)
            if qt[lay.w].name in by_weight]


def _array(obj: Any, t: Any, dtype: Any) -> np.ndarray:
    data = obj.buffers[t.buffer].data
    return np.frombuffer(np.asarray(data, np.uint8).tobytes(), dtype).reshape(t.shape).copy()


def to_torch(op: str, w: np.ndarray, in_channels: int) -> tuple[np.ndarray, int]:
    """(weight in the core's torch layout, group) from a TFLite weight array."""
    if op == "CONV_2D":  # OHWI -> OIHW
        return np.ascontiguousarray(w.transpose(0, 3, 1, 2)), 1
    if op == "DEPTHWISE_CONV_2D":  # 1HWO -> (O, 1, kh, kw), one group per input channel
        return np.ascontiguousarray(w[0].transpose(2, 0, 1)[:, None]), in_channels
    return w, 1  # FULLY_CONNECTED: (O, I)


def from_torch(op: str, w: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_torch`: the TFLite layout of a torch-layout weight."""
    if op == "CONV_2D":
        return np.ascontiguousarray(w.transpose(0, 2, 3, 1))
    if op == "DEPTHWISE_CONV_2D":
        return np.ascontiguousarray(w[:, 0].transpose(1, 2, 0)[None])
    return w


def explicit_pads(same: bool, in_hw: Sequence[int], k_hw: Sequence[int],
                  stride: Sequence[int], dilation: Sequence[int]) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of TFLite's SAME/VALID: SAME puts the odd row/column at
    the bottom/right (TensorFlow's rule), VALID pads nothing."""
    if not same:
        return (0, 0, 0, 0)
    pads = []
    for n, k, s, d in zip(in_hw, k_hw, stride, dilation, strict=True):
        out = -(-n // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - n, 0)
        pads.append((total // 2, total - total // 2))
    (t, b), (left, r) = pads
    return (t, left, b, r)


def preactivation(layer: Layer, x: np.ndarray, w: np.ndarray, bias: np.ndarray | None,
                  group: int, pads: tuple[int, int, int, int]) -> np.ndarray:
    """The layer's float output before its fused activation: x NCHW (or N, I), w torch
    layout. What the fp32 model computes inside the op, which TFLite does not expose."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch's own convention

    with torch.no_grad():
        xt, wt = torch.from_numpy(np.ascontiguousarray(x, np.float32)), torch.from_numpy(w)
        bt = None if bias is None else torch.from_numpy(bias.astype(np.float32))
        if layer.kind == "linear":
            return F.linear(xt, wt, bt).numpy()
        t, left, b, r = pads
        xt = F.pad(xt, (left, r, t, b))
        return F.conv2d(xt, wt, bt, stride=layer.stride, dilation=layer.dilation,
                        groups=group).numpy()


class _Activations:
    """Some inner tensors of one signature over frames, read from LiteRT as it deploys:
    made outputs of the subgraph, XNNPACK has to produce them. (Preserving every tensor
    instead turns XNNPACK off: LiteRT's builtin int8 kernels were ~50x slower,
    docs/int8/adaround_tflite.md.)"""

    def __init__(self, model: bytes, signature: str, tensors: Sequence[int],
                 threads: int) -> None:
        from ai_edge_litert import interpreter as tfl

        obj = read_model(model)
        self.subgraph = _signature_subgraph(obj, signature)
        sg = obj.subgraphs[self.subgraph]
        outs = list(sg.outputs)
        sg.outputs = outs + [t for t in dict.fromkeys(tensors) if t not in outs]
        self.it = tfl.Interpreter(model_content=write_model(obj), num_threads=threads)
        self.run = self.it.get_signature_runner(signature)
        self.quant = {t: _quant(sg.tensors[t]) if sg.tensors[t].type != _schema()[0]
                      .TensorType.FLOAT32 else None for t in tensors}

    def collect(self, samples: Sequence[dict[str, np.ndarray]],
                tensors: Sequence[int]) -> list[np.ndarray]:
        """Each of ``tensors`` over ``samples``, stacked on axis 0, dequantised if int."""
        rows: list[list[np.ndarray]] = [[] for _ in tensors]
        for s in samples:
            self.run(**s)
            for r, t in zip(rows, tensors, strict=True):
                v, q = self.it.get_tensor(t, self.subgraph), self.quant[t]
                r.append(v.copy() if q is None else
                         (v.astype(np.float32) - float(q[1][0])) * float(q[0][0]))
        return [np.concatenate(r, axis=0) for r in rows]


def _chunk(layers_: Sequence[tuple[Layer, Layer]], tensors: Any, start: int,
           rows: Callable[[Layer], int], budget: int) -> list[int]:
    """The layers from ``start`` whose fp32 inputs fit ``budget`` bytes together (one at
    least): read in one pass of the fp32 model."""
    out, total = [], 0
    for i in range(start, len(layers_)):
        f = layers_[i][1]
        size = rows(f) * int(np.prod(tensors[f.x].shape[1:])) * 4
        if out and total + size > budget:
            break
        out.append(i)
        total += size
    return out


def _layout(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """A layer's collected NHWC input in the core's layout: NCHW for a conv, (N, I) for a
    fully connected op (TFLite flattens its input in NHWC order, so reshape, no transpose)."""
    if w.ndim == 2:
        return np.ascontiguousarray(x.reshape(-1, w.shape[1]))
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def _quant(t: Any) -> tuple[np.ndarray, np.ndarray]:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        raise ConversionError(f"tensor {t.name!r} has no quantisation parameters")
    zp = np.zeros(len(q.scale), np.int64) if q.zeroPoint is None else np.asarray(q.zeroPoint)
    return np.asarray(q.scale, np.float32), zp


def _signature_subgraph(obj: Any, signature: str) -> int:
    for s in obj.signatureDefs or []:
        key = s.signatureKey.decode() if isinstance(s.signatureKey, bytes) else s.signatureKey
        if key == signature:
            return int(s.subgraphIndex)
    raise ConversionError(f"the TFLite model has no signature {signature!r}")


def reconstruct(qmodel: bytes, float_model: bytes, samples: Sequence[dict[str, np.ndarray]],
                signature: str, *, round_fn: RoundFn | None = None, frames: int = FRAMES,
                linear_frames: int = LINEAR_FRAMES, threads: int = 2,
                progress: Progress | None = None, label: Callable[[str], str] = str,
                **round_kw: Any) -> tuple[bytes, dict[str, Any]]:
    """``qmodel`` with every int8 weight rounded by ``round_fn`` (default AdaRound); (model,
    record for the provenance).

    ``float_model`` is the float .tflite ``qmodel`` was quantised from (same tensor names),
    ``samples`` the calibration inputs of ``signature`` (``{input name: array}`` each, as
    :func:`tflite_quant.calibration_inputs` makes them); the first ``frames`` are used
    (``linear_frames`` for a fully connected layer).
    ``round_fn`` has :func:`adaround.adaround_layer`'s signature; ``round_kw`` go to it.
    ``label`` names a layer from its weight tensor's name (``tflite_quant.layer_label``).
    """
    say = progress or (lambda _m: None)
    from edgeinfer.converter.int8.adaround import ITERATIONS, adaround_layer, versus_nearest

    fit = round_fn or adaround_layer
    samples = list(samples)[:max(frames, linear_frames)]
    if not samples:
        raise ConversionError("AdaRound needs calibration frames (real images)")
    t0, c0 = time.perf_counter(), time.process_time()
    qobj, fobj = read_model(qmodel), read_model(float_model)
    sg_q, sg_f = _signature_subgraph(qobj, signature), _signature_subgraph(fobj, signature)
    f_tensors = fobj.subgraphs[sg_f].tensors
    todo = pairs(qobj, sg_q, fobj, sg_f)

    def rows(lay: Layer) -> int:
        return min(len(samples), linear_frames if lay.kind == "linear" else frames)

    fp32_inputs: dict[int, np.ndarray] = {}  # layer -> its fp32 input, a chunk at a time
    changed = 0
    record: list[dict[str, Any]] = []
    for i, (lay, flay) in enumerate(todo):
        t_layer = time.perf_counter()
        tq = qobj.subgraphs[sg_q].tensors
        tw, tx = tq[lay.w], tq[lay.x]
        wf = _array(fobj, f_tensors[flay.w], np.float32)
        bf = None if flay.b is None else _array(fobj, f_tensors[flay.b], np.float32)
        s_w, _ = _quant(tw)
        w, group = to_torch(lay.op, wf, int(tx.shape[-1]))
        use = samples[:rows(lay)]
        if i not in fp32_inputs:
            chunk = _chunk(todo, f_tensors, i, rows, MEMORY)
            teacher = _Activations(float_model, signature, [todo[j][1].x for j in chunk],
                                   threads)
            got = teacher.collect(samples[:max(rows(todo[j][0]) for j in chunk)],
                                  [todo[j][1].x for j in chunk])
            fp32_inputs = {j: g[:rows(todo[j][0])] for j, g in zip(chunk, got, strict=True)}
            del teacher, got
        xf = _layout(fp32_inputs.pop(i), w)
        xq = _layout(_Activations(qmodel, signature, [lay.x], threads).collect(use, [lay.x])[0],
                     w)
        pads = ((0, 0, 0, 0) if lay.kind == "linear" else
                explicit_pads(lay.same, xq.shape[2:], w.shape[2:], lay.stride, lay.dilation))
        target = preactivation(lay, xf, w, bf, group, pads)
        scale = np.broadcast_to(s_w, (w.shape[0],)).astype(np.float32)
        st: dict[str, Any] = {}
        wq = fit(w, scale, xq, target, bias=bf, kind=lay.kind, stride=lay.stride, pads=pads,
                 dilation=lay.dilation, group=group, qmin=QMIN, qmax=QMAX,
                 activation=FUSED.get(lay.activation),
                 **({"stats": st} if round_fn is None else {}), **round_kw)
        new = from_torch(lay.op, np.asarray(wq, np.int8)).reshape(tw.shape)
        old = _array(qobj, tw, np.int8)
        n = int((new != old).sum())
        changed += n
        qobj.buffers[tw.buffer].data = np.frombuffer(new.tobytes(), np.uint8)
        qmodel = write_model(qobj)
        name = tw.name.decode() if isinstance(tw.name, bytes) else str(tw.name)
        record.append({"layer": label(name), "changed": n, "weights": int(new.size),
                       "kept_nearest": bool(st.get("kept_nearest"))})
        say(f"adaround {i + 1}/{len(todo)} {label(name)}: {n} of {new.size} weights re-rounded"
            f"{', ' + versus_nearest(st) if st else ''} ({time.perf_counter() - t_layer:.1f} s)")
    # the keys of adaround_onnx's record (targets.rounding_note reads them)
    info = {"method": "adaround", "iterations": round_kw.get("iterations", ITERATIONS),
            "frames": min(frames, len(samples)), "layers": len(todo),
            "seconds": round(time.perf_counter() - t0, 1),
            "cpu_seconds": round(time.process_time() - c0, 1), "changed_weights": changed,
            "weights": sum(r["weights"] for r in record),
            "kept_nearest": [r["layer"] for r in record if r["kept_nearest"]],
            "inputs": "quantised (LiteRT, XNNPACK)", "order": "sequential, layer by layer",
            "linear_frames": min(linear_frames, len(samples)), "signature": signature}
    return qmodel, info


METHODS = ("minmax", "adaround")


class Rounding:
    """AdaRound once per conversion, applied to every build of :class:`TfliteInt8`.

    Why: the accuracy control builds the model many times with different layers float
    (50 layers of EfficientNet-Lite0: a ranking build per layer); fitting AdaRound on each
    would multiply its cost. The roundings are fitted on the first build (the all-int8
    model) and kept by weight tensor name; a later build gets them written into the layers
    it still quantises (their per-channel weight scales come from the weights alone, so the
    same rounding applies), a layer kept float simply has no int8 buffer to receive them.
    """

    def __init__(self, float_model: bytes, samples: Sequence[dict[str, np.ndarray]],
                 signature: str, progress: Progress | None = None, **kw: Any) -> None:
        self.float_model, self.signature, self.say, self.kw = (float_model, signature,
                                                               progress, kw)
        self.samples = list(samples)[:max(kw.get("frames", FRAMES),
                                          kw.get("linear_frames", LINEAR_FRAMES))]
        self.weights: dict[bytes, np.ndarray] | None = None
        self.info: dict[str, Any] = {}

    def __call__(self, qmodel: bytes) -> bytes:
        if self.weights is None:
            qmodel, self.info = reconstruct(qmodel, self.float_model, self.samples,
                                            self.signature, progress=self.say, **self.kw)
            obj = read_model(qmodel)
            self.weights = {t.name: _array(obj, t, np.int8) for sg in obj.subgraphs
                            for t in sg.tensors if t.type == _schema()[0].TensorType.INT8
                            and obj.buffers[t.buffer].data is not None}
            return qmodel
        return apply_weights(qmodel, self.weights)


def apply_weights(qmodel: bytes, weights: dict[bytes, np.ndarray]) -> bytes:
    """``qmodel`` with the int8 constant tensors named in ``weights`` (same shape) replaced."""
    schema, _ = _schema()
    obj = read_model(qmodel)
    for sg in obj.subgraphs:
        for t in sg.tensors:
            new = weights.get(t.name)
            if (new is not None and t.type == schema.TensorType.INT8
                    and obj.buffers[t.buffer].data is not None
                    and tuple(new.shape) == tuple(t.shape)):
                obj.buffers[t.buffer].data = np.frombuffer(new.tobytes(), np.uint8)
    return write_model(obj)


def rounding_for(method: str, float_model: bytes,
                 samples: dict[str, list[dict[str, np.ndarray]]],
                 progress: Progress | None = None,
                 label: Callable[[str], str] = str) -> Rounding | None:
    """The int8 weight rounding of ``method``: None for ai_edge_quantizer's own (nearest,
    'minmax' ranges), a :class:`Rounding` for 'adaround' (fitted on the ``resized``
    signature's calibration inputs: every calibration frame, whatever its size)."""
    from edgeinfer.artifact import SIG_RESIZED

    if method not in METHODS:
        raise ConversionError(f"int8 method {method!r} is not one of {', '.join(METHODS)}")
    if method == "minmax":
        return None
    return Rounding(float_model, samples[SIG_RESIZED], SIG_RESIZED, progress, label=label)
