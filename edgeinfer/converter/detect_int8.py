"""int8 for a detector artifact: onnxruntime static QDQ of the model's convolutions only,
judged on detection agreement with the fp32 artifact (issue 28, point 5).

Why only the Conv nodes: the classifier recipe (:mod:`edgeinfer.converter.int8.onnx_quant`)
quantises every op onnxruntime knows after the prefix, which for a detector includes the
box decoding (``exp(t) * stride + centre``) and the ending's Gather/Concat of box corners:
a uint8 step over a 0..500 pixel range is 2 pixels on every box. The convolutions carry
the compute; the decoding, NMS and the inverse letterbox stay float and cost microseconds.
The preprocessing prefix (its 1x1 colour Conv included) stays float as in the classifier.
Settings as the classifier's default (U8S8, per-channel symmetric weights, ``reduce_range``
for AVX2 CPUs without VNNI, MinMax calibration on raw frames through the prefix).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edgeinfer.progress import Progress


def head_convs(model: onnx.ModelProto, outputs: Sequence[str]) -> list[str]:
    """The last Conv on every path to ``outputs``: a detector's class and box heads (the
    classifier recipe's ``float_head``: the numbers that decide a box stay float)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    found: list[str] = []
    stack, seen = list(outputs), set()
    while stack:
        n = producer.get(stack.pop())
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        if n.op_type == "Conv":
            found.append(n.name)
        else:
            stack.extend(n.input)
    return sorted(found)


def quantize_detector(model: onnx.ModelProto, calibration: Sequence[np.ndarray],
                      say: Progress, float_head: bool = True, reduce_range: bool = True
                      ) -> onnx.ModelProto:
    """The QDQ int8 model (metadata_props kept) of an fp32 detector ModelProto;
    ``float_head`` keeps the head convolutions (:func:`head_convs`) float."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from edgeinfer.converter.int8.onnx_quant import _FrameReader, float_nodes

    props = {p.key: p.value for p in model.metadata_props}
    with tempfile.TemporaryDirectory(prefix="edgeinfer_detq_") as d:
        fp32, pre, out = Path(d) / "fp32.onnx", Path(d) / "pre.onnx", Path(d) / "int8.onnx"
        src = onnx.ModelProto()
        src.CopyFrom(model)
        for i, n in enumerate(src.graph.node):
            n.name = n.name or f"edgeinfer_node_{i}"
        onnx.save_model(src, fp32)
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        pre_model = onnx.load_model(pre)
        keep = float_nodes(pre_model)
        # from the graph's outputs: the optimiser may drop the core's Identity names
        heads = (head_convs(pre_model, [o.name for o in pre_model.graph.output])
                 if float_head else [])
        say(f"int8: QDQ U8S8{' reduce_range' if reduce_range else ''}, per-channel "
            f"weights, Conv only, MinMax on {len(calibration)} frames; {len(keep)} prefix "
            f"nodes and {len(heads)} head convolutions kept float")
        keep = keep + heads
        quantize_static(str(pre), str(out), _FrameReader(list(calibration), progress=say),
                        quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=["Conv"], nodes_to_exclude=keep,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        q = onnx.load_model(out)
    del q.metadata_props[:]
    onnx.helper.set_model_props(q, props)
    q.producer_name = "edgeinfer"
    return q


class OnnxDetInt8:
    """One calibration, many Conv-only quantisations of an fp32 detector (the accuracy
    control's ONNX builder): onnxruntime caches the ranges (``calibration_cache_path``),
    so only the first :meth:`build` calibrates. ``candidates``: every Conv after the
    prefix, in graph order (the head convolutions too: the loop decides)."""

    def __init__(self, model: onnx.ModelProto, calibration: Sequence[np.ndarray],
                 say: Progress, reduce_range: bool = True) -> None:
        from onnxruntime.quantization import quant_pre_process

        from edgeinfer.converter.int8.onnx_quant import float_nodes

        self.props = {p.key: p.value for p in model.metadata_props}
        self.calibration, self.say, self.reduce_range = list(calibration), say, reduce_range
        self._tmp = tempfile.TemporaryDirectory(prefix="edgeinfer_detq_")
        d = Path(self._tmp.name)
        fp32, self.pre, self.cache = d / "fp32.onnx", d / "pre.onnx", d / "ranges.json"
        src = onnx.ModelProto()
        src.CopyFrom(model)
        for i, n in enumerate(src.graph.node):
            n.name = n.name or f"edgeinfer_node_{i}"
        onnx.save_model(src, fp32)
        quant_pre_process(str(fp32), str(self.pre), skip_symbolic_shape=True)
        pre = onnx.load_model(self.pre)
        self.base = float_nodes(pre)
        self.candidates = [n.name for n in pre.graph.node
                           if n.op_type == "Conv" and n.name not in set(self.base)]
        inits = {i.name for i in pre.graph.initializer}
        #: node -> its weight's name (``c3.0.0``): what a person reads in the record
        self.labels = {n.name: next((i.removesuffix(".weight") for i in n.input[1:]
                                     if i in inits), n.name)
                       for n in pre.graph.node if n.name in self.candidates}

    def close(self) -> None:
        self._tmp.cleanup()

    def build(self, keep_float: Sequence[str] = ()) -> bytes:
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )

        from edgeinfer.converter.int8.onnx_quant import _FrameReader

        first = not self.cache.exists()
        out = Path(self._tmp.name) / "int8.onnx"
        quantize_static(str(self.pre), str(out),
                        _FrameReader(self.calibration, progress=self.say) if first else None,
                        quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=self.reduce_range, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=["Conv"],
                        nodes_to_exclude=self.base + list(keep_float),
                        calibrate_method=CalibrationMethod.MinMax,
                        calibration_cache_path=str(self.cache),
                        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False})
        q = onnx.load_model(out)
        del q.metadata_props[:]
        onnx.helper.set_model_props(q, self.props)
        q.producer_name = "edgeinfer"
        return q.SerializeToString()


def tflite_builder(bare: bytes, spec: Any, frame_hw: tuple[int, int],
                   calibration: Sequence[np.ndarray], props: dict[str, str], say: Progress
                   ) -> tuple[Any, list[str], dict[str, str]]:
    """(build(keep_float) -> the int8 .tflite with ``props`` embedded, the candidate
    layers, their readable names): ai_edge_quantizer full-integer int8 (the classifier's
    ``int8.tflite_quant.TfliteInt8``: prefix float, per-channel weights, min/max over every
    calibration frame) of the float detector; a candidate is a weighted op and the ops
    after it up to the next (the box decoding after the box head's)."""
    from edgeinfer.converter.export.tflite_metadata import embed_metadata
    from edgeinfer.converter.int8.tflite_quant import TfliteInt8

    t = TfliteInt8(bare, spec, frame_hw, list(calibration), True, say)

    def build(keep: Sequence[str]) -> bytes:
        return embed_metadata(t.build(keep), props)

    return build, list(t.candidates), dict(t.labels)
