"""A source model whose own tensors are named like the artifact's I/O ('frame', 'probs')
must still assemble (tf2onnx names outputs after the last layer, e.g. a layer 'probs')."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeinfer.converter.assemble import assemble
from edgeinfer.parity.runners import ArtifactRunner, OnnxSourceRunner
from edgeinfer.parity.stats import compare
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.spec import PreprocessSpec

SPEC = PreprocessSpec(size=(8, 8), frame_color="BGR", model_color="GRAY", scale=1 / 255,
                      mean=(0.3,), std=(0.4,))


def _core() -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(64, 3)).astype(np.float32), "w")
    g = helper.make_graph(
        [helper.make_node("Flatten", ["frame"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["probs"])],
        "named", [helper.make_tensor_value_info("frame", TensorProto.FLOAT, ["n", 1, 8, 8])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["n", 3])], [w])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])


def test_core_named_frame_and_probs_assembles_and_matches() -> None:
    core = _core()
    art = assemble(core, SPEC).model
    onnx.checker.check_model(art, full_check=True)
    frames = [np.random.default_rng(i).integers(0, 256, (8, 8, 3), np.uint8) for i in range(5)]
    out = ArtifactRunner(art.SerializeToString()).run(frames)
    ref = OnnxSourceRunner(core.SerializeToString(), SPEC, apply_softmax=True).run(frames)
    assert compare(ref, out, tolerance("onnx", "fp32")).passed
