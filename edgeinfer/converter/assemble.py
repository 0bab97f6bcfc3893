"""Assemble an artifact: model graph -> fold BN -> softmax -> preprocessing prefix -> metadata.

The core model takes the spec's float model input and returns one [N, K] tensor. The
result takes the raw uint8 frame (``frame``) and returns probabilities (``probs``), so
nothing on the device can preprocess differently or forget the softmax.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import compose, helper, version_converter

from edgeinfer.artifact import INPUT_NAME, OUTPUT_NAME, ArtifactMetadata
from edgeinfer.converter.passes.base import count_ops
from edgeinfer.converter.passes.fold_batchnorm import FoldBatchNorm
from edgeinfer.converter.preprocess_graph import (
    ANTIALIAS_OPSET,
    MIN_OPSET,
    PREFIX_OUTPUT,
    build_preprocess_model,
)
from edgeinfer.errors import ConversionError
from edgeinfer.spec import PreprocessSpec


@dataclass(frozen=True)
class Assembled:
    model: onnx.ModelProto
    bn_before: int
    bn_after: int
    softmax_added: bool
    opset: int


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def check_core(model: onnx.ModelProto, spec: PreprocessSpec) -> None:
    """One float input of the spec's model-input shape, one output: else a clear error."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or len(model.graph.output) != 1:
        raise ConversionError(f"the model must have one input and one output, it has "
                              f"{len(inputs)} and {len(model.graph.output)}")
    tt = inputs[0].type.tensor_type
    if tt.elem_type != onnx.TensorProto.FLOAT:
        raise ConversionError(f"the model input '{inputs[0].name}' must be float32")
    dims = [d.dim_value or None for d in tt.shape.dim]
    want = spec.model_input_shape()[1:]
    if len(dims) != 4 or any(d is not None and d != w for d, w in zip(dims[1:], want, strict=True)):
        raise ConversionError(f"the model input '{inputs[0].name}' has shape {dims}, but the "
                              f"spec produces [N, {', '.join(map(str, want))}] ({spec.layout}); "
                              "fix the spec's size/layout/model_color")


def _ends_in_softmax(model: onnx.ModelProto) -> bool:
    out = model.graph.output[0].name
    producer = next((n for n in model.graph.node if out in n.output), None)
    # A LogSoftmax output still gets a Softmax: softmax(log_softmax(z)) == softmax(z).
    return producer is not None and producer.op_type == "Softmax"


def _rename_tensor(g: onnx.GraphProto, old: str, new: str) -> None:
    for n in g.node:
        n.input[:] = [new if t == old else t for t in n.input]
        n.output[:] = [new if t == old else t for t in n.output]
    for v in [*g.input, *g.output, *g.value_info, *g.initializer]:
        if v.name == old:
            v.name = new


def _finish_output(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bool]:
    """Append Softmax over the last axis unless the model already ends in one."""
    g = model.graph
    # A core whose own tensors are called 'probs' or 'frame' (tf2onnx names the output
    # after the last layer) would clash with the artifact's I/O names.
    taken = {t for n in g.node for t in [*n.input, *n.output]} | {v.name for v in g.input}
    for name in (OUTPUT_NAME, INPUT_NAME):
        if name in taken:
            _rename_tensor(g, name, f"core_{name}")
    old = g.output[0]
    add = not _ends_in_softmax(model)
    if add:
        g.node.append(helper.make_node("Softmax", [old.name], [OUTPUT_NAME], axis=-1,
                                       name="edgeinfer_softmax"))
    else:
        g.node.append(helper.make_node("Identity", [old.name], [OUTPUT_NAME],
                                       name="edgeinfer_probs"))
    g.output.pop()
    g.output.append(helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT,
                                                  ["batch", "classes"]))
    return model, add


def assemble(core: onnx.ModelProto, spec: PreprocessSpec) -> Assembled:
    """Fold BN, add softmax and the preprocessing prefix; metadata is added by `with_metadata`."""
    check_core(core, spec)
    opset = default_opset(core)
    need = max(MIN_OPSET, ANTIALIAS_OPSET if spec.antialias else 0)
    if opset < need:
        try:
            core = version_converter.convert_version(core, need)
        except Exception as e:  # noqa: BLE001
            raise ConversionError(f"cannot convert the model from opset {opset} to {need}: "
                                  f"{e}") from e
        opset = need
    bn_before = count_ops(core, "BatchNormalization")
    core = FoldBatchNorm().call(core).model
    bn_after = count_ops(core, "BatchNormalization")
    core, softmax_added = _finish_output(core)

    prefix = build_preprocess_model(spec, opset=opset)
    prefix.ir_version = core.ir_version
    core_input = next(i.name for i in core.graph.input
                      if i.name not in {t.name for t in core.graph.initializer})
    # Other domains the core uses (e.g. com.microsoft) must be declared on both sides.
    for imp in core.opset_import:
        if imp.domain not in ("", "ai.onnx"):
            prefix.opset_import.append(imp)
    try:
        merged = compose.merge_models(prefix, core, io_map=[(PREFIX_OUTPUT, core_input)])
    except Exception as e:  # noqa: BLE001
        raise ConversionError(f"cannot attach the preprocessing prefix: {e}") from e
    merged.graph.name = core.graph.name or "edgeinfer"
    if merged.graph.input[0].name != INPUT_NAME:
        raise ConversionError("internal: the artifact input is not 'frame'")
    return Assembled(merged, bn_before, bn_after, softmax_added, opset)


def with_metadata(model: onnx.ModelProto, meta: ArtifactMetadata) -> onnx.ModelProto:
    """Replace edgeinfer metadata props, keep the model's own (e.g. a source's labels)."""
    props = meta.to_props()
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, dict(kept) | props)
    model.producer_name = "edgeinfer"
    return model


def num_classes(model: onnx.ModelProto) -> int:
    """Static class count from the ``probs`` output, 0 when unknown."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(model)
        vi = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
        producer = next(n for n in inferred.graph.node if OUTPUT_NAME in n.output)
        dims = vi[producer.input[0]].type.tensor_type.shape.dim
        return int(dims[-1].dim_value)
    except (StopIteration, KeyError, IndexError, shape_inference.InferenceError):
        return 0

