"""int8 ONNX: onnxruntime static quantisation (QDQ) of a fp32 artifact, calibrated on real frames.

The input is the fp32 ARTIFACT (uint8 ``frame`` in, ``probs`` out), so calibration frames
go through exactly the preprocessing that deploys. The preprocessing prefix
(``edgeinfer_pre/...``) and the final Softmax stay float: quantising the normalisation at
the very start of a model is a known source of int8 error, and a float prefix costs
little (one 1x1 Conv on the resized image). The model's first Conv quantises its input,
so the spec's scale and mean end up folded into that input's quantisation parameters.

Choices (measured on the reference models, see docs/ladder/):
- QDQ with uint8 activations and int8 weights (U8S8), what onnxruntime recommends for CPUs;
  weights symmetric, per-channel by default (per-tensor on request).
- ``reduce_range`` (7-bit weights) is ON. On x86 CPUs without VNNI (AVX2, AVX-512 before
  Cascade Lake) onnxruntime's U8S8 kernels use VPMADDUBSW, whose 16-bit intermediate sums
  saturate. With 8-bit weights the fashion model agreed with fp32 on 96.9% of the 10k
  test images (accuracy -1.3 points) and EfficientNet-Lite0 on 4/6 photos, while the same
  QDQ graph run without kernel fusion (int8 arithmetic simulated in float) agreed 6/6; with
  7-bit weights: 99.3% (-0.13 points) and 6/6. The per-layer diagnosis of ``edgeinfer
  check`` puts the jump at the first Conv of each model.
  7-bit weights cannot saturate; they cost almost nothing per-channel, and the artifact
  then predicts the same on every CPU it may meet. U8U8 also avoids saturation but ran
  about 2x slower here.
- Calibration: MinMax over all calibration frames. Percentile (99.999) was no better on
  the reference models and Entropy was much worse on EfficientNet-Lite0 (3/6 agreement).
- Excluded (kept float): every node upstream of ``edgeinfer_pixels`` (the prefix) and the
  final Softmax. Calibration feeds equal-sized frames in batches of 32, one batch per
  collection, so frames of different sizes never need to share a tensor.
"""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx

from edgeinfer.artifact import INPUT_NAME, OUTPUT_NAME
from edgeinfer.converter.preprocess_graph import PREFIX_NODE_PREFIX, PREFIX_OUTPUT
from edgeinfer.errors import ConversionError
from edgeinfer.progress import Progress

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
ROUNDINGS = ("nearest", "adaround")  # weight rounding: onnxruntime's, or adaround_onnx.py
CALIBRATION_BATCH = 32
PERCENTILE = 99.999
QUANT_NODE_PREFIX = "edgeinfer_q/"
KEY_QUANTIZATION = "edgeinfer.quantization"


class _FrameReader:
    """A CalibrationDataReader over raw uint8 frames, equal-sized frames stacked in batches.

    Frames of different sizes cannot share a batch; the artifact's height and width are
    dynamic, so each group of equal-sized frames is fed on its own.
    """

    def __init__(self, frames: Sequence[np.ndarray], batch: int = CALIBRATION_BATCH,
                 progress: Progress | None = None) -> None:
        groups: dict[tuple, list[np.ndarray]] = defaultdict(list)
        for f in frames:
            groups[f.shape].append(f if f.ndim == 3 else f[..., None])
        self.batches = [np.stack(g[s:s + batch]) for g in groups.values()
                        for s in range(0, len(g), batch)]
        self.n = len(frames)
        self.i = 0
        self.end = len(self.batches)
        self.seen = 0
        self.progress = progress

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.i >= self.end:
            return None
        x = self.batches[self.i]
        self.i += 1
        self.seen += len(x)
        if self.progress and (self.i == len(self.batches) or self.i % 8 == 0):
            self.progress(f"calibration {self.seen}/{self.n} frames")
        return {INPUT_NAME: x}

    def set_range(self, start_index: int, end_index: int) -> None:
        """Used with ``CalibStridedMinMax``: one batch per collection, so histogram
        calibrators never stack tensors of different frame sizes."""
        self.i, self.end = start_index, min(end_index, len(self.batches))

    def __len__(self) -> int:
        return len(self.batches)


def float_nodes(model: onnx.ModelProto, head: bool = False) -> list[str]:
    """Names of the nodes that stay float: the preprocessing prefix and the final Softmax.

    The prefix is found by name and, to be robust to nodes renamed or added by graph
    optimisation, as everything upstream of the prefix output ``edgeinfer_pixels``.
    ``head``: also the classifier (a Gemm/MatMul feeding the final Softmax), so the logits
    that decide the top-1 class are computed in float.
    """
    producer = {o: n for n in model.graph.node for o in n.output}
    keep: set[str] = set()
    stack = [PREFIX_OUTPUT]
    seen: set[int] = set()
    while stack:
        n = producer.get(stack.pop())
        if n is None or id(n) in seen:
            continue
        seen.add(id(n))
        keep.add(n.name)
        stack.extend(n.input)
    keep |= {n.name for n in model.graph.node if n.name.startswith(PREFIX_NODE_PREFIX)}
    out = producer.get(OUTPUT_NAME)
    if out is not None and out.op_type in ("Softmax", "Identity"):
        keep.add(out.name)
        if out.op_type == "Identity" and out.input[0] in producer:
            out = producer[out.input[0]]
            keep.add(out.name)  # a source's own final Softmax
    if head and out is not None and out.input and out.input[0] in producer:
        fc = producer[out.input[0]]
        if fc.op_type in ("Gemm", "MatMul"):
            keep.add(fc.name)  # the classifier: logits in float
    return sorted(k for k in keep if k)


def _ensure_node_names(model: onnx.ModelProto) -> None:
    used = {n.name for n in model.graph.node if n.name}
    for i, n in enumerate(model.graph.node):
        if not n.name:
            name = f"edgeinfer_node_{i}"
            while name in used:
                name += "_"
            n.name = name
            used.add(name)


def _dedupe_opsets(model: onnx.ModelProto) -> None:
    """compose.merge_models can list the default domain twice; keep the highest per domain."""
    best: dict[str, int] = {}
    for o in model.opset_import:
        best[o.domain] = max(best.get(o.domain, 0), o.version)
    del model.opset_import[:]
    for d, v in best.items():
        model.opset_import.append(onnx.helper.make_opsetid(d, v))


def _tidy(model: onnx.ModelProto) -> None:
    """Drop the opset imports the ORT optimiser added but no node uses (a portable artifact
    declares only what it needs), and keep the ``edgeinfer_pre/`` names for float prefix
    nodes: a Q/DQ pair inserted on the prefix output gets an ``edgeinfer_q/`` name."""
    used = {n.domain or "" for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if (o.domain or "") in used]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    _dedupe_opsets(model)
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear") and \
                n.name.startswith(PREFIX_NODE_PREFIX):
            n.name = QUANT_NODE_PREFIX + n.name[len(PREFIX_NODE_PREFIX):]


class OnnxInt8:
    """One calibration, many quantisations of the same fp32 artifact (``with`` closes it).

    Why: the accuracy control (:mod:`edgeinfer.converter.int8.control`) quantises the same
    model once per step, each time with a few more nodes kept float. Calibration (running
    every frame through the model) is what costs; onnxruntime caches the tensor ranges in a
    file (``calibration_cache_path``), so only the first :meth:`build` calibrates and the
    others reuse the same ranges: every step differs only in the nodes kept float.
    ``candidates``: the compute nodes (Conv/Gemm/MatMul) that may be kept float, in graph
    order, named as in the pre-processed graph.
    """

    COMPUTE = ("Conv", "ConvTranspose", "Gemm", "MatMul")

    def __init__(self, model: onnx.ModelProto, calibration: list[np.ndarray],
                 per_channel: bool = True, progress: Progress | None = None, *,
                 method: str = "minmax", reduce_range: bool = True,
                 activation_type: str = "uint8", weight_type: str = "int8",
                 target: str | None = None, float_head: bool = False,
                 rounding: str = "nearest", rounding_options: dict | None = None) -> None:
        from onnxruntime.quantization import quant_pre_process

        from edgeinfer.converter.int8.targets import SETTINGS, default_target_note, resolve_target

        given = target
        target = resolve_target(target)
        if target is not None:
            t = SETTINGS[target]
            reduce_range, activation_type, weight_type = (t.reduce_range, t.activation_type,
                                                          t.weight_type)
        self.note = default_target_note() if given is None and reduce_range else None
        if not calibration:
            raise ConversionError("int8 quantisation needs calibration frames; none were given")
        if method not in CALIBRATION_METHODS:
            raise ConversionError(f"calibration method {method!r} is not one of "
                                  f"{', '.join(CALIBRATION_METHODS)}")
        if rounding not in ROUNDINGS:
            raise ConversionError(f"weight rounding {rounding!r} is not one of "
                                  f"{', '.join(ROUNDINGS)}")
        if rounding == "adaround":
            from edgeinfer.errors import require

            require("torch", "convert", "AdaRound (--int8-method adaround)")
        #: AdaRound's int8 weights by node, fitted on the first build and written into every
        #: later one (the control loop re-quantises with layers float: same scales)
        self.rounding, self.rounding_options = rounding, dict(rounding_options or {})
        self.rounded: dict[str, np.ndarray] | None = None
        self.rounding_record: dict | None = None
        if activation_type not in ("uint8", "int8") or weight_type not in ("uint8", "int8"):
            raise ConversionError("activation_type and weight_type must be 'uint8' or 'int8'")
        self.say: Progress = progress or (lambda _m: None)
        self.props = {p.key: p.value for p in model.metadata_props}
        self.producer = model.producer_name
        self.calibration, self.per_channel, self.method = calibration, per_channel, method
        self.reduce_range, self.target, self.float_head = reduce_range, target, float_head
        self.types = (activation_type, weight_type)
        self.scheme = ("U8" if activation_type == "uint8" else "S8") + \
            ("U8" if weight_type == "uint8" else "S8")
        from edgeinfer.converter.moments import without_moments

        src = onnx.ModelProto()
        src.CopyFrom(without_moments(model))
        _dedupe_opsets(src)
        _ensure_node_names(src)
        self._tmp = tempfile.TemporaryDirectory(prefix="edgeinfer_q_")
        d = Path(self._tmp.name)
        fp32, self.pre, self.cache = d / "fp32.onnx", d / "pre.onnx", d / "ranges.json"
        onnx.save_model(src, fp32)
        if self.note:
            self.say(self.note)
        self.say("quantisation pre-processing (shape inference, graph optimisation)")
        # ONNX shape inference suffices (standard ops only); the symbolic pass only adds
        # noise about the prefix's data-dependent crop sizes. It keeps metadata_props.
        quant_pre_process(str(fp32), str(self.pre), skip_symbolic_shape=True)
        pre = onnx.load_model(self.pre)
        self.base_exclude = float_nodes(pre, head=float_head)
        base = set(self.base_exclude)
        self.candidates = [n.name for n in pre.graph.node
                           if n.op_type in self.COMPUTE and n.name not in base]
        #: a candidate's group: the compute node and the nodes after it up to the next one
        #: (its activation, a residual Add, ...). Keeping only the Conv float leaves its
        #: Clip quantised: EfficientNet-Lite0 with all 50 Conv/Gemm float still flipped 3
        #: of 600 photos; with whole groups float it is the fp32 graph.
        self.groups: dict[str, list[str]] = {}
        current: list[str] | None = None
        pending: list[str] = []  # nodes before the first compute node (a Pad): its group
        for n in pre.graph.node:
            if n.name in base:
                continue
            if n.name in self.candidates:
                current = self.groups.setdefault(n.name, [n.name, *pending])
                pending = []
            elif current is not None:
                current.append(n.name)
            else:
                pending.append(n.name)
        inits = {i.name for i in pre.graph.initializer}
        #: node name -> a name a person can read: its weight's name (``blocks.3.conv``)
        self.labels = {n.name: next((i.removesuffix(".weight") for i in n.input[1:]
                                     if i in inits), n.name)
                       for n in pre.graph.node if n.name in self.candidates}

    def __enter__(self) -> OnnxInt8:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._tmp.cleanup()

    def build(self, keep_float: Sequence[str] = ()) -> onnx.ModelProto:
        """The QDQ model with the prefix, the softmax and ``keep_float`` left in float."""
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        unknown = sorted(set(keep_float) - set(self.candidates))
        if unknown:
            raise ConversionError(f"cannot keep {', '.join(unknown[:3])} float: not a "
                                  "quantisable compute node of this model")
        methods = {"minmax": CalibrationMethod.MinMax,
                   "percentile": CalibrationMethod.Percentile,
                   "entropy": CalibrationMethod.Entropy}
        types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
        members = [m for n in keep_float for m in self.groups[n]]
        exclude = self.base_exclude + [n for n in members if n not in self.base_exclude]
        first = not self.cache.exists()
        if first:
            self.say(f"quantising: QDQ {self.scheme}{' reduce_range' if self.reduce_range else ''}"
                     f", {'per-channel' if self.per_channel else 'per-tensor'} weights, "
                     f"{self.method} calibration on {len(self.calibration)} frames; "
                     f"{len(self.base_exclude)} prefix/softmax nodes kept float")
        extra = {"WeightSymmetric": True, "ActivationSymmetric": False,
                 "CalibStridedMinMax": 1}
        if self.method == "percentile":
            extra["CalibPercentile"] = PERCENTILE
        out = Path(self._tmp.name) / "int8.onnx"
        try:
            quantize_static(
                str(self.pre), str(out),
                _FrameReader(self.calibration, progress=self.say) if first else None,
                quant_format=QuantFormat.QDQ, per_channel=self.per_channel,
                reduce_range=self.reduce_range, activation_type=types[self.types[0]],
                weight_type=types[self.types[1]], nodes_to_exclude=exclude,
                calibrate_method=methods[self.method], extra_options=extra,
                calibration_cache_path=str(self.cache),
            )
        except Exception as e:  # noqa: BLE001 - onnxruntime raises assorted types
            raise ConversionError(f"onnxruntime static quantisation failed: "
                                  f"{type(e).__name__}: {e}") from e
        q = onnx.load_model(out)
        _tidy(q)
        if self.rounding == "adaround":
            self._adaround(q)
        settings = {"format": "QDQ", "scheme": self.scheme, "reduce_range": self.reduce_range,
                    "target": self.target or ("x86-avx2" if self.reduce_range
                                              else "unspecified"),
                    "per_channel": self.per_channel, "calibration_method": self.method,
                    "float_head": self.float_head,
                    "calibration_frames": len(self.calibration),
                    "float_nodes": len(exclude), "kept_float": list(keep_float),
                    "quantisable_layers": len(self.candidates),
                    **({"target_note": self.note} if self.note else {}),
                    **({"rounding": self.rounding_record} if self.rounding_record else {}),
                    "onnxruntime": _ort_version()}
        del q.metadata_props[:]
        onnx.helper.set_model_props(q, self.props | {KEY_QUANTIZATION: json.dumps(settings)})
        q.producer_name = self.producer or q.producer_name
        return q


    def _adaround(self, q: onnx.ModelProto) -> None:
        """AdaRound the int8 layers of ``q`` (first build: fitted on the calibration frames
        only; later builds: the same rounding written into the layers still int8)."""
        from edgeinfer.converter.int8.adaround_onnx import adaround_qdq, apply_rounding

        if self.rounded is None:
            self.rounded, self.rounding_record = adaround_qdq(
                q, onnx.load_model(self.pre), self.calibration, say=self.say,
                reduce_range=self.reduce_range, **self.rounding_options)
        else:
            apply_rounding(q, self.rounded)


def quantize_int8(model: onnx.ModelProto, calibration: list[np.ndarray],
                  per_channel: bool = True, progress: Progress | None = None, *,
                  method: str = "minmax", reduce_range: bool = True,
                  activation_type: str = "uint8", weight_type: str = "int8",
                  target: str | None = None, float_head: bool = False,
                  keep_float: Sequence[str] = (), rounding: str = "nearest",
                  rounding_options: dict | None = None) -> onnx.ModelProto:
    """Static int8 QDQ quantisation of a fp32 artifact, calibrated on raw uint8 frames.

    Returns a new ModelProto with the input's metadata_props plus ``edgeinfer.quantization``
    (the settings, as JSON); the preprocessing prefix and the final Softmax stay float.
    ``method`` is one of ``CALIBRATION_METHODS``; ``activation_type``/``weight_type`` are
    ``uint8`` or ``int8`` (default U8S8); ``reduce_range`` uses 7-bit weights (see module doc).
    ``target`` (``x86-avx2``, ``x86-vnni``, ``arm64`` or ``auto``, see
    :mod:`edgeinfer.converter.int8.targets`) overrides ``reduce_range`` and the types with the
    settings that suit that CPU; without it the settings are x86-avx2's (safe on any CPU).
    ``float_head`` keeps the classifier (the Gemm/MatMul feeding the final Softmax) float;
    ``keep_float`` names more compute nodes to keep float (see :class:`OnnxInt8`).
    ``rounding``: ``nearest`` (onnxruntime's) or ``adaround`` (each int8 weight rounded up or
    down to match the layer's fp32 output on the calibration frames, adaround_onnx.py;
    ``rounding_options`` go to :func:`~edgeinfer.converter.int8.adaround_onnx.adaround_qdq`).
    """
    with OnnxInt8(model, calibration, per_channel, progress, method=method,
                  reduce_range=reduce_range, activation_type=activation_type,
                  weight_type=weight_type, target=target, float_head=float_head,
                  rounding=rounding, rounding_options=rounding_options) as q:
        return q.build(keep_float)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
