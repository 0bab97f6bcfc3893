"""Session fixtures for the parity-ladder tests: real int8 artifacts from the real converter,
and deliberately broken artifacts built from real ones."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import compose, numpy_helper

from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.converter.preprocess_graph import PREFIX_NODE_PREFIX, PREFIX_OUTPUT
from edgeinfer.data.frames import load_frames


@pytest.fixture(scope="session")
def fashion_test(fashion_conversion):
    return load_frames("fashion-test", fashion_conversion.metadata.spec)


def _edited(src: Path, out: Path, edit) -> Path:
    m = onnx.load_model(src)
    edit(m)
    onnx.save_model(m, out)
    return out


@pytest.fixture(scope="session")
def wrong_mean_artifact(fashion_artifact, tmp_path_factory) -> Path:
    """The fp32 artifact with ImageNet's gray mean (0.485) baked in instead of the
    dataset's (0.286): the classic preprocessing mismatch, invisible in the metadata."""
    spec = ArtifactMetadata.from_props(
        {p.key: p.value for p in onnx.load_model(fashion_artifact).metadata_props}).spec

    def edit(m: onnx.ModelProto) -> None:
        init = next(i for i in m.graph.initializer
                    if i.name.startswith(PREFIX_NODE_PREFIX + "color_b_"))
        b = numpy_helper.to_array(init) - (0.485 - spec.mean[0]) / spec.std[0]
        init.CopyFrom(numpy_helper.from_array(b.astype(np.float32), init.name))

    return _edited(fashion_artifact, tmp_path_factory.mktemp("broken") / "wrong_mean.onnx",
                   edit)


def int8_conv_weight(m: onnx.ModelProto, k: int) -> tuple[str, onnx.NodeProto]:
    """The k-th Conv of the model (prefix excluded): its weight name and the weight's DQ."""
    convs = [n for n in m.graph.node
             if n.op_type == "Conv" and not n.name.startswith(PREFIX_NODE_PREFIX)]
    dq_out = convs[k].input[1]
    dq = next(n for n in m.graph.node if n.op_type == "DequantizeLinear" and
              dq_out in n.output)
    return dq.input[0].removesuffix("_quantized"), dq


@pytest.fixture(scope="session")
def broken_int8_artifact(fashion_int8, tmp_path_factory) -> tuple[Path, str]:
    """The int8 artifact with the second Conv's weight scales multiplied by 4."""
    name = {}

    def edit(m: onnx.ModelProto) -> None:
        w, dq = int8_conv_weight(m, 1)
        name["w"] = w
        init = next(i for i in m.graph.initializer if i.name == dq.input[1])
        s = numpy_helper.to_array(init) * 4
        init.CopyFrom(numpy_helper.from_array(s.astype(np.float32), init.name))

    p = _edited(fashion_int8, tmp_path_factory.mktemp("broken") / "broken_int8.onnx", edit)
    return p, name["w"].removesuffix(".weight")


@pytest.fixture(scope="session")
def train_mode_artifact(fashion_artifact, tmp_path_factory) -> Path:
    """The trained fashion model exported in TRAINING mode (BatchNorm on batch statistics),
    wrapped like an artifact without the converter (which refuses such graphs)."""
    import torch

    from edgeinfer.converter.assemble import _finish_output, with_metadata
    from edgeinfer.converter.preprocess_graph import build_preprocess_model
    from edgeinfer.converter.sources.reference import _load_file, get_reference

    ref = get_reference("fashion")
    net = _load_file(ref.path / "net.py").build()
    net.load_state_dict(torch.load(ref.weights(), weights_only=True))
    net.train()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(2, 1, 28, 28),), buf, dynamo=False,
                          training=torch.onnx.TrainingMode.TRAINING, do_constant_folding=False,
                          input_names=["x"], dynamic_axes={"x": {0: "batch"}}, opset_version=18)
    core = onnx.load_model_from_string(buf.getvalue())
    while len(core.graph.output) > 1:
        core.graph.output.pop()
    core, _ = _finish_output(core)
    meta = ArtifactMetadata.from_props(
        {p.key: p.value for p in onnx.load_model(fashion_artifact).metadata_props})
    prefix = build_preprocess_model(meta.spec, opset=18)
    prefix.ir_version = core.ir_version
    model = with_metadata(compose.merge_models(prefix, core, io_map=[(PREFIX_OUTPUT, "x")]),
                          meta)
    out = tmp_path_factory.mktemp("broken") / "train_mode.onnx"
    onnx.save_model(model, out)
    return out
