"""int8 by reconstruction: AIMET's label-free weight rounding on the artifact's model part.

Why: calibration alone (onnxruntime MinMax, :mod:`edgeinfer.converter.int8.onnx_quant`)
rounds every weight to nearest; reconstruction chooses each layer's weight encodings
(SeqMSE: a scale search per channel) or roundings (AdaRound: up or down per weight) so that
the layer's int8 output matches its fp32 output on the calibration frames, with the fp32
model as the teacher and no labels. docs/int8/reconstruction.md has the evidence and the
limits: AdaRound is what certifies the fashion model at 99.5% with every layer int8, while on
EfficientNet-Lite0 AIMET's own quantisation scheme loses to onnxruntime's (do not use it there).

How: the float preprocessing prefix is cut off (its output ``edgeinfer_pixels`` is what
AIMET sees and quantises, so the first Conv's input is quantised as in onnx_quant.py), the
final Softmax's quantisers are disabled (it stays float), and the quantised model part
(standard QuantizeLinear/DequantizeLinear, int8 weights stored as int8) is grafted back
behind the same prefix with the artifact's metadata and ``edgeinfer.quantization``.

The library is an optional extra (``pip install 'edgeinfer[int8-recon]'``, aimet-onnx): it
brings ~1 GB (its own 330 MB, bokeh/panel/holoviews, a torchvision that does not import
beside the CPU torch), so nothing else imports this module.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import onnx

from edgeinfer.artifact import INPUT_NAME, KEY_QUANTIZATION, OUTPUT_NAME, PREFIX_OUTPUT
from edgeinfer.converter.preprocess_graph import PREFIX_NODE_PREFIX
from edgeinfer.errors import ConversionError, require
from edgeinfer.progress import Progress

METHODS = ("adaround", "seqmse")
#: frames the reconstruction fits on, and AdaRound's steps per layer: the budgets measured
#: (AIMET recommends 10k steps; 200 took 24-96 s for the fashion model on 2 shared cores)
RECON_FRAMES = 64
ITERATIONS = 200


def _opsets(*models: onnx.ModelProto) -> list[onnx.OperatorSetIdProto]:
    """One import per domain, the highest: an artifact merged by onnx.compose can list the
    default domain twice."""
    best: dict[str, int] = {}
    for m in models:
        for o in m.opset_import:
            d = "" if o.domain == "ai.onnx" else o.domain
            best[d] = max(best.get(d, 0), o.version)
    return [onnx.helper.make_opsetid(d, v) for d, v in best.items()]


def split(model: onnx.ModelProto) -> tuple[list[onnx.NodeProto], onnx.ModelProto, str]:
    """(prefix nodes, the model part from ``PREFIX_OUTPUT`` to ``OUTPUT_NAME``, softmax name).

    The prefix: every node upstream of ``PREFIX_OUTPUT`` and every ``edgeinfer_pre/`` node
    (some compute crop sizes nothing downstream of the pixels reads; in an onnxruntime int8
    artifact the optimiser has renamed ``PREFIX_OUTPUT`` and the names are all there is)."""
    from edgeinfer.converter.moments import without_moments

    m = without_moments(model)
    for i, n in enumerate(m.graph.node):
        n.name = n.name or f"edgeinfer_node_{i}"
    producer = {o: n for n in m.graph.node for o in n.output}
    if OUTPUT_NAME not in producer:
        raise ConversionError(f"not an edgeinfer ONNX artifact: no {OUTPUT_NAME!r} output")
    up: set[str] = set()
    stack = [PREFIX_OUTPUT]
    while stack:
        n = producer.get(stack.pop())
        if n is not None and n.name not in up:
            up.add(n.name)
            stack.extend(n.input)
    up |= {n.name for n in m.graph.node if n.name.startswith(PREFIX_NODE_PREFIX)}
    prefix = [n for n in m.graph.node if n.name in up]
    body = [n for n in m.graph.node if n.name not in up]
    used = {i for n in body for i in n.input}
    inits = [i for i in m.graph.initializer if i.name in used]
    x = onnx.helper.make_tensor_value_info(PREFIX_OUTPUT, onnx.TensorProto.FLOAT,
                                           ["N", None, None, None])
    g = onnx.helper.make_graph(body, "model", [x], list(m.graph.output), inits)
    part = onnx.helper.make_model(g, opset_imports=_opsets(m), ir_version=m.ir_version)
    return prefix, part, producer[OUTPUT_NAME].name


def graft(fp32: onnx.ModelProto, qpart: onnx.ModelProto, settings: dict) -> onnx.ModelProto:
    """The fp32 artifact's float prefix followed by the quantised model part, with the
    artifact's metadata and ``settings`` as ``edgeinfer.quantization``."""
    from edgeinfer.converter.moments import without_moments

    m = without_moments(fp32)
    prefix, _, _ = split(m)
    used = {i for n in prefix for i in n.input}
    inits = [i for i in m.graph.initializer if i.name in used]
    clash = {i.name for i in inits} & {i.name for i in qpart.graph.initializer}
    if clash:
        raise ConversionError(f"prefix and model part share names: {sorted(clash)[:3]}")
    g = onnx.helper.make_graph(prefix + list(qpart.graph.node), m.graph.name,
                               list(m.graph.input), list(qpart.graph.output),
                               inits + list(qpart.graph.initializer))
    out = onnx.helper.make_model(g, opset_imports=_opsets(m, qpart),
                                 ir_version=max(m.ir_version, qpart.ir_version))
    props = {p.key: p.value for p in m.metadata_props}
    onnx.helper.set_model_props(out, props | {KEY_QUANTIZATION: json.dumps(settings)})
    out.producer_name = m.producer_name
    return out


def prefix_pixels(model: onnx.ModelProto, frames: Sequence[np.ndarray]) -> list[np.ndarray]:
    """What the float prefix hands the model, one [1, C, H, W] array per raw frame."""
    import onnxruntime as ort

    from edgeinfer.parity.prefix import with_prefix_output

    s = ort.InferenceSession(with_prefix_output(model.SerializeToString()),
                             providers=["CPUExecutionProvider"])
    return [s.run([PREFIX_OUTPUT], {INPUT_NAME: (f if f.ndim == 3 else f[..., None])[None]})[0]
            for f in frames]


def reconstruct_int8(model: onnx.ModelProto, calibration: Sequence[np.ndarray],
                     method: str = "adaround", progress: Progress | None = None, *,
                     frames: int = RECON_FRAMES, iterations: int = ITERATIONS) -> onnx.ModelProto:
    """Static int8 (QDQ, int8 per-channel symmetric weights, uint8 activations, MinMax
    ranges over all ``calibration`` frames) with the weights reconstructed by ``method``
    (``seqmse`` or ``adaround``) on the first ``frames`` frames. Every compute layer of the
    model part is int8; the prefix and the Softmax stay float."""
    if method not in METHODS:
        raise ConversionError(f"reconstruction method {method!r} is not one of "
                              f"{', '.join(METHODS)}")
    if not calibration:
        raise ConversionError("int8 reconstruction needs calibration frames; none were given")
    if not any(PREFIX_OUTPUT in n.output for n in model.graph.node):
        raise ConversionError(f"int8 reconstruction needs an fp32 edgeinfer ONNX artifact: no "
                              f"{PREFIX_OUTPUT!r} tensor")
    require("aimet_onnx", "int8-recon", "int8 reconstruction (AdaRound/SeqMSE)")
    import aimet_onnx

    say: Progress = progress or (lambda _m: None)
    _, part, softmax = split(model)
    xs = prefix_pixels(model, calibration)
    dims = part.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(dims[1:], xs[0].shape[1:], strict=True):
        d.dim_value = v  # static C, H, W: SeqMSE sizes its buffers from the input shape
    qpart = aimet_qdq(part, xs, softmax, method, frames, iterations, say)
    settings = {"format": "QDQ", "scheme": "U8S8", "reduce_range": False, "target": "x86-vnni",
                "per_channel": True, "calibration_method": "minmax",
                "reconstruction": {"library": "aimet-onnx", "version": aimet_onnx.__version__,
                                   "method": method, "frames": min(frames, len(xs)),
                                   **({"iterations": iterations}
                                      if method == "adaround" else {})},
                "calibration_frames": len(calibration), "kept_float": []}
    return graft(model, qpart, settings)


def aimet_qdq(part: onnx.ModelProto, xs: Sequence[np.ndarray], softmax: str, method: str,
              frames: int = RECON_FRAMES, iterations: int = ITERATIONS,
              say: Progress | None = None) -> onnx.ModelProto:
    """AIMET ONNX on the model part (input: the prefix's pixels ``xs``): MinMax ranges over
    every frame, the weights reconstructed by ``method`` (``seqmse``, ``adaround``, or
    anything else: none) on the first ``frames``; the Softmax stays float. The QDQ part, int8
    weights in the file. One pass for ``reconstruct_int8`` and the study tool."""
    from pathlib import Path

    import aimet_onnx
    from aimet_onnx import QuantizationSimModel, apply_adaround, apply_seq_mse

    say = say or (lambda _m: None)
    cfg = (Path(aimet_onnx.__file__).parent / "common" / "quantsim_config"
           / "default_config_per_channel.json")
    # the Softmax's tensors by their names in the part as given: QuantizationSimModel renames
    # a quantised tensor's consumers' inputs (``linear_1`` -> ``linear_1_updated``)
    sm = next(n for n in part.graph.node if n.name == softmax)
    floats = [*sm.input, *sm.output]
    sim = QuantizationSimModel(part, param_type="int8", activation_type="int8",
                               quant_scheme="min_max", config_file=str(cfg))
    for t in floats:
        if t in sim.qc_quantize_op_dict:
            sim.qc_quantize_op_dict[t].enabled = False
    inputs = [{PREFIX_OUTPUT: x} for x in xs]
    if method == "seqmse":  # chooses the weight encodings: before compute_encodings
        say(f"int8 reconstruction: SeqMSE on {min(frames, len(inputs))} frames")
        apply_seq_mse(sim, inputs[:frames])
    say(f"int8 reconstruction: MinMax ranges on {len(inputs)} frames")
    sim.compute_encodings(inputs)
    if method == "adaround":
        say(f"int8 reconstruction: AdaRound, {iterations} steps per layer on "
            f"{min(frames, len(inputs))} frames")
        apply_adaround(sim, inputs[:frames], num_iterations=iterations)
    return sim.to_onnx_qdq(prequantize_constants=True)

