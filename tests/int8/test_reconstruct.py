"""int8 by reconstruction (converter/int8/reconstruct.py) on the trained fashion model.

The prefix/model split and the graft are checked on the real fp32 artifact (the graft of
the unquantised model part must be the artifact itself); the reconstruction itself needs
the optional ``int8-recon`` extra (aimet-onnx) and is slow: it must leave every compute
layer int8 and agree with fp32 at least as often as plain MinMax does on the test images.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgeinfer.artifact import KEY_QUANTIZATION, PREFIX_OUTPUT
from edgeinfer.converter.int8.reconstruct import graft, reconstruct_int8, split
from edgeinfer.converter.preprocess_graph import PREFIX_NODE_PREFIX
from edgeinfer.data.frames import load_frames
from edgeinfer.errors import ConversionError, MissingExtraError
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.runtime.metadata import read_metadata


def test_split_keeps_the_prefix_out_and_graft_restores_the_artifact(fashion_artifact):
    fp32 = onnx.load_model(fashion_artifact)
    prefix, part, softmax = split(fp32)
    assert prefix and all(n.name not in {p.name for p in prefix} for n in part.graph.node)
    assert [i.name for i in part.graph.input] == [PREFIX_OUTPUT]
    assert not any(n.name.startswith(PREFIX_NODE_PREFIX) for n in part.graph.node)
    assert next(n for n in part.graph.node if n.name == softmax).op_type == "Softmax"
    back = graft(fp32, part, {"method": "none"})
    assert json.loads({p.key: p.value for p in back.metadata_props}[KEY_QUANTIZATION]) == \
        {"method": "none"}
    spec = read_metadata(str(fashion_artifact)).spec
    frames = load_frames("builtin:fashion-test", spec, limit=300).frames
    ref = ArtifactRunner(str(fashion_artifact)).run(frames)
    out = ArtifactRunner(back.SerializeToString()).run(frames)
    np.testing.assert_array_equal(out, ref)


def test_an_unknown_method_or_no_frames_is_refused_in_one_line(fashion_artifact):
    fp32 = onnx.load_model(fashion_artifact)
    with pytest.raises(ConversionError, match="not one of adaround, seqmse"):
        reconstruct_int8(fp32, [np.zeros((28, 28), np.uint8)], method="brecq")
    with pytest.raises(ConversionError, match="needs calibration frames"):
        reconstruct_int8(fp32, [], method="seqmse")


def test_without_the_extra_the_error_names_it(fashion_artifact):
    try:
        import aimet_onnx  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("aimet-onnx is installed here")
    with pytest.raises(MissingExtraError, match=r"edgeinfer\[int8-recon\]"):
        reconstruct_int8(onnx.load_model(fashion_artifact), [np.zeros((28, 28), np.uint8)])


@pytest.mark.slow
@pytest.mark.parametrize("method", ["adaround"])
def test_reconstruction_keeps_every_layer_int8_and_loses_nothing_to_minmax(
        fashion_artifact, method):
    pytest.importorskip("aimet_onnx")
    from edgeinfer.converter.int8.onnx_quant import quantize_int8
    from edgeinfer.parity.stats import compare
    from edgeinfer.parity.tolerances import tolerance

    fp32 = onnx.load_model(fashion_artifact)
    spec = read_metadata(str(fashion_artifact)).spec
    cal = load_frames("builtin:fashion-train", spec, limit=256).frames
    test = load_frames("builtin:fashion-test", spec, limit=4000).frames
    q = reconstruct_int8(fp32, cal, method=method)
    _, part, softmax = split(q)
    producer = {o: n for n in part.graph.node for o in n.output}
    compute = [n for n in part.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert compute and all(producer[n.input[1]].op_type == "DequantizeLinear" for n in compute)
    assert producer[next(n for n in part.graph.node if n.name == softmax).input[0]].op_type \
        != "DequantizeLinear"  # the softmax reads float logits
    ref = ArtifactRunner(str(fashion_artifact)).run(test)
    tol = tolerance("onnx", "int8")
    recon = compare(ref, ArtifactRunner(q.SerializeToString()).run(test), tol)
    plain = compare(ref, ArtifactRunner(quantize_int8(fp32, cal, target="x86-vnni")
                                        .SerializeToString()).run(test), tol)
    assert recon.top1_agreement >= plain.top1_agreement
    assert recon.top1_agreement >= tol.min_top1
