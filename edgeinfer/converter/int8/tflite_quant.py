"""TFLite quantisation with ai_edge_quantizer: fp16 weights, and full-integer int8 whose
calibration, bias handling and float islands (prefix, softmax) are chosen by measurement
(docs/decisions/tflite-int8.md has the numbers).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from edgeinfer.artifact import SIG_FRAME, SIG_RESIZED, TFLITE_PREFIX_SCOPE
from edgeinfer.errors import ConversionError
from edgeinfer.progress import Progress
from edgeinfer.spec import PreprocessSpec

QUANTIZE = (None, "fp16", "int8")

# Module attribute names of the traced model: they become the TFLite tensor names' scopes,
# which the int8 recipe matches to keep the prefix and the softmax in float.
PREFIX_SCOPE = TFLITE_PREFIX_SCOPE
SOFTMAX_SCOPE = "edgeinfer_softmax"


def quantize_fp16(model: bytes) -> bytes:
    """Weight-only float16: conv/FC weights stored as fp16, compute in float."""
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer

    q = quantizer.Quantizer(bytearray(model))
    q.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                             num_bits=16,
                             algorithm_key=algorithm_manager.AlgorithmName.FLOAT_CASTING)
    return bytes(q.quantize(enable_progress_report=False).quantized_model)


def _int8_recipe_quantizer(model: bytes, per_channel: bool = True):
    from ai_edge_quantizer import algorithm_manager, qtyping, quantizer

    q = quantizer.Quantizer(bytearray(model))
    gran = (qtyping.QuantGranularity.CHANNELWISE if per_channel
            else qtyping.QuantGranularity.TENSORWISE)
    q.add_static_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                        activation_num_bits=8, weight_num_bits=8, weight_granularity=gran)
    # The latest matching config wins. Keep in float: the signature inputs and outputs
    # (uint8 frame / float resized in, float probs out), the prefix ops (matched by the
    # module scope in their tensor names) and the softmax.
    no_quant = algorithm_manager.AlgorithmName.NO_QUANTIZE
    op = qtyping.TFLOperationName
    for name in (op.INPUT, op.OUTPUT, op.SOFTMAX):
        q.update_quantization_recipe(regex=".*", operation_name=name, algorithm_key=no_quant)
    q.update_quantization_recipe(regex=PREFIX_SCOPE, operation_name=op.ALL_SUPPORTED,
                                 algorithm_key=no_quant)
    return q


# Ops whose int32 bias is quantised with input_scale * weight_scale, and the bias's input
# slot. Such a bias depends on the calibration of its own subgraph.
_BIAS_SLOT = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3}


def unshare_biases(model: bytes) -> bytes:
    """Give each signature its own copy of the bias buffers it shares with another one.

    The two signatures share constant buffers. int8 weights are quantised from the
    weights alone (per channel, symmetric), so sharing them stays correct; an int32 bias
    is scaled by its input's activation scale, which each signature calibrates on its
    own, so a shared bias would be overwritten by the other signature's scale. Only
    biases are copied (a few KB), the weights stay shared.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    owner: dict[int, int] = {}  # buffer -> first subgraph using it as a bias
    changed = False
    for sg_i, sg in enumerate(obj.subgraphs):
        for op in sg.operators:
            code = flatbuffer_utils.get_builtin_code_from_operator_code(
                obj.operatorCodes[op.opcodeIndex])
            slot = _BIAS_SLOT.get(names.get(code, ""))
            if slot is None or len(op.inputs) <= slot or op.inputs[slot] < 0:
                continue
            t = sg.tensors[op.inputs[slot]]
            if owner.setdefault(t.buffer, sg_i) != sg_i:
                src = obj.buffers[t.buffer]
                copy = schema.BufferT()
                copy.data = None if src.data is None else np.array(src.data, np.uint8)
                obj.buffers.append(copy)
                t.buffer = len(obj.buffers) - 1
                owner[t.buffer] = sg_i
                changed = True
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj)) if changed else model


def calibration_inputs(spec: PreprocessSpec, frame_hw: tuple[int, int],
                       frames: Sequence[np.ndarray]) -> dict[str, list[dict[str, np.ndarray]]]:
    """Per-signature calibration inputs from real uint8 frames.

    ``resized`` gets every frame through the host geometry (what the runtime feeds it).
    ``frame`` gets the frames of the fixed size as they are; if there are none, every
    frame resized to ``frame_hw`` with OpenCV (only activation statistics come from
    these, so an approximate resize is good enough).
    """
    import cv2

    h, w = frame_hw
    c = spec.frame_channels
    same = [f for f in frames if f.shape[:2] == (h, w)]
    if not same:
        same = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR).reshape(h, w, c)
                for f in frames]
    geo = spec.geometry()
    return {
        SIG_FRAME: [{SIG_FRAME: np.ascontiguousarray(f.reshape(1, h, w, c))} for f in same],
        SIG_RESIZED: [{SIG_RESIZED: geo(f)} for f in frames],
    }


def _minmax_update(qsv: dict, new: dict) -> dict:
    """Merge two calibration statistics: the range covering both."""
    if not qsv:
        return new
    return {**qsv, "min": np.minimum(qsv["min"], new["min"]),
            "max": np.maximum(qsv["max"], new["max"])}


#: TFLite ops the accuracy control may keep float: the ones that carry weights.
COMPUTE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


#: The two signatures trace the same module under these class names; a layer's tensors
#: differ only by them, so a candidate names both signatures' op at once.
_SIGNATURES = ("_FrameSignature", "_ResizedSignature")
_SIG = "{signature}"


def compute_ops(model: bytes) -> dict[str, list[str]]:
    """The weighted ops outside the prefix, in graph order, one name per layer, each with
    its group: the layer's op and the ops after it up to the next weighted op (activation,
    residual ADD, MEAN ...), which must stay float with it or their quantisation remains.
    A name is the op's scope (output tensor names) with the signature's class name
    replaced by ``{signature}``, so that a layer kept float is float in both signatures."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    out: dict[str, list[str]] = {}
    for sg in obj.subgraphs:
        current: list[str] | None = None
        pending: list[str] = []  # ops before the first weighted op (a PAD): its group
        for op in sg.operators:
            code = names.get(flatbuffer_utils.get_builtin_code_from_operator_code(
                obj.operatorCodes[op.opcodeIndex]), "")
            name = ";".join(_tname(sg.tensors[i].name) for i in op.outputs)
            for sig in _SIGNATURES:
                name = name.replace(sig, _SIG)
            if PREFIX_SCOPE in name or SOFTMAX_SCOPE in name or code == "SOFTMAX":
                continue
            if code in COMPUTE_OPS:
                current = out.setdefault(name, [])
                current += [p for p in pending if p not in current]
                pending = []
            if current is None:
                pending.append(name)
            elif name not in current:
                current.append(name)
    return out


def layer_label(name: str) -> str:
    """A readable layer name from a candidate's scope: the module attribute path of its
    Conv/Linear (``MBConvBlock_3/Conv2d..__depthwise_conv`` -> ``3._depthwise_conv``)."""
    import re

    weighted = re.compile(r"Conv|Linear")
    parts = [p for p in name.split(";") if "/" in p]
    pick = next((p for p in reversed(parts) if weighted.search(p)), parts[-1] if parts else name)
    comps = pick.split("/")[2:] or pick.split("/")
    last = max((i for i, c in enumerate(comps) if weighted.search(c.rsplit(".", 1)[-1])),
               default=len(comps) - 1)

    def attr(c: str) -> str:
        cls = c.rsplit(".", 1)[-1]
        return cls.split("_", 1)[1] if "_" in cls else cls

    return ".".join(attr(c) for c in comps[:last + 1]) or name


def _scope_regex(name: str) -> str:
    import re

    sigs = "(?:" + "|".join(_SIGNATURES) + ")"
    return "^" + re.escape(name + ";").replace(re.escape(_SIG), sigs)


def _tname(name: bytes | str) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


class TfliteInt8:
    """One calibration, many quantisations of the same float .tflite.

    Why: as for ONNX (:class:`edgeinfer.converter.int8.onnx_quant.OnnxInt8`), the accuracy
    control quantises the model once per step with a few more ops kept float; the
    calibration statistics (qsvs) are computed once and reused. An op is kept float by a
    NO_QUANTIZE recipe entry matching its scope (its output tensor names), the quantiser
    then inserts the dequantize/quantize around it. ``candidates``: :func:`compute_ops`.
    """

    def __init__(self, model: bytes, spec: PreprocessSpec, frame_hw: tuple[int, int],
                 frames: Sequence[np.ndarray], per_channel: bool = True,
                 progress: Progress | None = None, method: str = "minmax") -> None:
        if not frames:
            raise ConversionError("int8 quantisation needs calibration frames (real images)")
        from ai_edge_quantizer import calibrator, recipe_manager

        self.model, self.per_channel, self.say = model, per_channel, progress
        self.float_model = unshare_biases(model)
        self.groups = compute_ops(model)
        self.candidates = list(self.groups)
        self.labels = {c: layer_label(c) for c in self.candidates}
        q = _int8_recipe_quantizer(self.float_model, per_channel)
        data = calibration_inputs(spec, frame_hw, frames)
        try:
            # Quantizer.calibrate() would merge per-sample ranges with a 0.95 moving average
            # (QAT style): the range then follows the last ~20 samples and clips the others
            # (EfficientNet-Lite0's logits were clipped from 11.2 to 6.8 that way). PTQ wants
            # the range of all calibration data: the same calibrator with a min/max merge.
            rm = recipe_manager.RecipeManager()
            rm.load_quantization_recipe(q.get_quantization_recipe())
            calib = calibrator.Calibrator(self.float_model,
                                          num_threads=max(1, min(4, os.cpu_count() or 1)),
                                          qsv_update_func=_minmax_update)
            calib.calibrate(data, rm)
            self.qsvs = calib.get_model_qsvs()
        except Exception as e:  # noqa: BLE001 - the quantiser raises ValueError/RuntimeError
            msg = " ".join(str(e).split())[:300] or type(e).__name__
            raise ConversionError(f"int8 calibration of the TFLite model failed: {msg}") from e
        self.fixed = 0
        from edgeinfer.converter.int8.adaround_tflite import rounding_for  # weight rounding

        self.rounding = rounding_for(method, self.float_model, data, progress, layer_label)

    def build(self, keep_float: Sequence[str] = ()) -> bytes:
        """The full-integer model with the prefix, the softmax and ``keep_float`` in float."""
        from ai_edge_quantizer import algorithm_manager, qtyping

        unknown = sorted(set(keep_float) - set(self.candidates))
        if unknown:
            raise ConversionError(f"cannot keep {', '.join(unknown[:3])} float: not a "
                                  "weighted op of this model")
        q = _int8_recipe_quantizer(self.float_model, self.per_channel)
        for name in (m for k in keep_float for m in self.groups[k]):
            q.update_quantization_recipe(
                regex=_scope_regex(name),
                operation_name=qtyping.TFLOperationName.ALL_SUPPORTED,
                algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)
        try:
            qmodel = bytes(q.quantize(self.qsvs, enable_progress_report=False).quantized_model)
        except Exception as e:  # noqa: BLE001 - the quantiser raises ValueError/RuntimeError
            msg = " ".join(str(e).split())[:300] or type(e).__name__
            raise ConversionError(f"int8 quantisation of the TFLite model failed: {msg}") from e
        qmodel, self.fixed = fix_bias_overflow(self.model, qmodel)
        return qmodel if self.rounding is None else self.rounding(qmodel)

    @property
    def rounding_record(self) -> dict | None:
        """What AdaRound did (for ``provenance["int8_rounding"]``), as OnnxInt8's."""
        return self.rounding.info if self.rounding is not None else None


def quantize_int8(model: bytes, spec: PreprocessSpec, frame_hw: tuple[int, int],
                  frames: Sequence[np.ndarray], per_channel: bool = True,
                  progress: Progress | None = None, method: str = "minmax") -> bytes:
    """Full-integer int8 with the prefix and softmax in float, calibrated on ``frames``;
    ``method`` 'adaround' re-rounds the int8 weights (:mod:`.adaround_tflite`)."""
    t = TfliteInt8(model, spec, frame_hw, frames, per_channel, progress, method)
    qmodel = t.build()
    if t.fixed and progress:
        progress(f"int8: raised the weight scale of {t.fixed} near-zero channel(s) so their "
                 "int32 bias fits")
    return qmodel


_INT32_LIMIT = 2**30  # half of int32's range: headroom for the accumulator


def fix_bias_overflow(float_model: bytes, quant_model: bytes) -> tuple[bytes, int]:
    """Raise the weight scale of channels whose int32 bias would overflow; (model, count).

    A bias is stored as ``round(b / (s_in * s_w))`` in int32. After BatchNorm folding a
    channel whose BN gamma is ~0 has weights ~1e-9 (a "dead" channel: its output is its
    bias) and then a per-channel weight scale ~1e-11, so the bias quotient is far
    beyond int32 and the quantiser clips or wraps it: the channel outputs garbage
    instead of its constant. EfficientNet-Lite0 has such channels from its very first
    conv. TFLite's legacy quantiser adjusts the weight scale for this case
    (``AdjustWeightsForBiasScale``); ai_edge_quantizer 0.10 does not, so it is done here:
    ``s_w = max(s_w, |b| / (s_in * 2**30))``, the channel's weights and bias are
    re-quantised from the float model. Weights shared by the two signatures get the
    larger of the scales both need, so the shared buffer stays consistent.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    fm = flatbuffer_utils.read_model_from_bytearray(bytearray(float_model))
    qm = flatbuffer_utils.read_model_from_bytearray(bytearray(quant_model))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    tt = schema.TensorType

    def f32(model, t) -> np.ndarray | None:
        data = model.buffers[t.buffer].data
        if data is None or len(data) == 0 or t.type != tt.FLOAT32:
            return None
        return np.frombuffer(np.asarray(data, np.uint8).tobytes(), np.float32).reshape(t.shape)

    uses = []  # (subgraph, weight tensor, bias tensor, s_in, w_float, b_float)
    need: dict[int, np.ndarray] = {}  # weight buffer -> per-channel minimum scale
    for sg_i, sg in enumerate(qm.subgraphs):
        fl = {t.name: t for t in fm.subgraphs[sg_i].tensors}
        for op in sg.operators:
            code = flatbuffer_utils.get_builtin_code_from_operator_code(
                qm.operatorCodes[op.opcodeIndex])
            if names.get(code) not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
                continue
            if len(op.inputs) < 3 or op.inputs[2] < 0:
                continue
            tx, tw, tb = (sg.tensors[i] for i in op.inputs[:3])
            if tw.type != tt.INT8 or tb.type != tt.INT32 or tx.quantization is None:
                continue
            s_x = np.asarray(tx.quantization.scale, np.float64)
            s_w = np.asarray(tw.quantization.scale, np.float64)
            if s_x.size != 1 or s_w.size == 0:
                continue
            fw, fb = fl.get(tw.name), fl.get(tb.name)
            w = f32(fm, fw) if fw is not None else None
            b = f32(fm, fb) if fb is not None else None
            if w is None or b is None:
                continue
            req = np.abs(b.astype(np.float64)) / (float(s_x[0]) * _INT32_LIMIT)
            req = np.broadcast_to(req, s_w.shape) if s_w.size > 1 else np.array([req.max()])
            # only channels that overflow; 0.1% above the bound so that the float32-stored
            # scale stays above it (a second pass then changes nothing)
            req = np.where(req > s_w, req * 1.001, s_w)
            prev = need.get(tw.buffer)
            need[tw.buffer] = req if prev is None else np.maximum(prev, req)
            uses.append((tw, tb, float(s_x[0]), w, b))

    fixed = 0
    done: set[int] = set()
    for tw, tb, s_x, w, b in uses:
        s_old = np.asarray(tw.quantization.scale, np.float64)
        s_new = np.maximum(s_old, need[tw.buffer])
        if np.array_equal(s_new, s_old):
            continue
        dim = int(tw.quantization.quantizedDimension or 0) if s_new.size > 1 else None
        shape = [1] * w.ndim
        if dim is not None:
            shape[dim] = -1
        sw = s_new.reshape(shape) if dim is not None else s_new.reshape(())
        if tw.buffer not in done:  # a shared weight buffer is rewritten once
            wq = np.clip(np.rint(w / sw), -127, 127).astype(np.int8)
            qm.buffers[tw.buffer].data = np.frombuffer(wq.tobytes(), np.uint8)
            done.add(tw.buffer)
            fixed += int((s_new != s_old).sum())
        tw.quantization.scale = s_new.astype(np.float32).tolist()
        s_b = s_x * s_new
        bq = np.clip(np.rint(b / s_b.reshape(-1) if s_b.size > 1 else b / s_b[0]),
                     -(2**31 - 1), 2**31 - 1).astype(np.int32)
        qm.buffers[tb.buffer].data = np.frombuffer(bq.tobytes(), np.uint8)
        tb.quantization.scale = s_b.astype(np.float32).tolist()
    if not fixed:
        return quant_model, 0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(qm)), fixed


# ---------------------------------------------------------------------------- metadata


def check_quantize(quantize: str | None) -> None:
    if quantize not in QUANTIZE:
        raise ConversionError(f"TFLite quantize={quantize!r} is not one of "
                              f"{', '.join(str(q) for q in QUANTIZE)}")


def quantize_tflite(float_model: bytes, spec: PreprocessSpec, hw: tuple[int, int],
                    quantize: str | None, calibration: Sequence[np.ndarray],
                    per_channel: bool, say: Progress, method: str = "minmax") -> bytes:
    """The float .tflite as is (``None``), with fp16 weights, or full-integer int8."""
    check_quantize(quantize)
    if quantize is None:
        return float_model
    if quantize == "fp16":
        say("quantising weights to float16 (ai_edge_quantizer FLOAT_CASTING)")
        return quantize_fp16(float_model)
    say(f"int8 full-integer quantisation calibrated on {len(calibration)} frames (prefix and "
        f"softmax kept float, weights per-{'channel' if per_channel else 'tensor'})")
    return quantize_int8(float_model, spec, hw, list(calibration), per_channel, say, method)
