"""int8 ONNX from the real converter, judged on all 10,000 Fashion-MNIST test images."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgeinfer.converter.api import convert
from edgeinfer.converter.int8.onnx_quant import (
    KEY_QUANTIZATION,
    _FrameReader,
    float_nodes,
    quantize_int8,
)
from edgeinfer.converter.preprocess_graph import PREFIX_NODE_PREFIX, PREFIX_OUTPUT
from edgeinfer.errors import ConversionError
from edgeinfer.parity.runners import ArtifactRunner


@pytest.fixture(scope="module")
def fp32_probs(fashion_artifact, fashion_test):
    return ArtifactRunner(str(fashion_artifact)).run(fashion_test.frames)


def _agreement_and_accuracy(path, fashion_test, fp32_probs):
    p = ArtifactRunner(str(path)).run(fashion_test.frames)
    agree = float((p.argmax(-1) == fp32_probs.argmax(-1)).mean())
    acc = float((p.argmax(-1) == fashion_test.labels).mean())
    acc32 = float((fp32_probs.argmax(-1) == fashion_test.labels).mean())
    return agree, acc, acc32


@pytest.mark.slow
def test_fashion_int8_agrees_with_fp32_on_all_test_images(fashion_int8, fashion_test,
                                                          fp32_probs):
    assert len(fashion_test.frames) == 10_000
    agree, acc, acc32 = _agreement_and_accuracy(fashion_int8, fashion_test, fp32_probs)
    assert agree >= 0.99, agree
    assert acc32 - acc <= 0.01, (acc32, acc)
    assert acc32 > 0.85  # a trained model, so the comparison means something


@pytest.mark.slow
def test_per_tensor_int8_works(fashion_artifact, fashion_test, fp32_probs, tmp_path):
    res = convert("fashion", tmp_path / "pt.onnx", quantize="int8", per_channel=False,
                  parity_limit=1000)
    settings = json.loads({p.key: p.value for p in
                           onnx.load_model(res.path).metadata_props}[KEY_QUANTIZATION])
    assert settings["per_channel"] is False
    agree, acc, acc32 = _agreement_and_accuracy(res.path, fashion_test, fp32_probs)
    assert agree >= 0.99, agree
    assert acc32 - acc <= 0.01, (acc32, acc)


def test_int8_is_smaller_and_really_quantised(fashion_artifact, fashion_int8):
    m = onnx.load_model(fashion_int8)
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("QuantizeLinear") >= 4 and ops.count("DequantizeLinear") >= 8
    assert fashion_int8.stat().st_size < 0.5 * fashion_artifact.stat().st_size


def test_preprocessing_prefix_and_softmax_stay_float(fashion_int8):
    m = onnx.load_model(fashion_int8)
    producer = {o: n for n in m.graph.node for o in n.output}
    prefix = [n for n in m.graph.node if n.name.startswith(PREFIX_NODE_PREFIX)]
    assert prefix, "the prefix nodes keep their names"
    for n in prefix:
        assert n.op_type not in ("QuantizeLinear", "DequantizeLinear", "QLinearConv")
        for i in n.input:  # nothing quantised feeds the prefix
            assert i not in producer or producer[i].op_type != "DequantizeLinear", n.name
    conv = next(n for n in prefix if n.op_type == "Conv")
    assert conv.name.startswith(PREFIX_NODE_PREFIX + "normalized")
    # The first QuantizeLinear of the graph quantises the prefix's float output.
    first_q = next(n for n in m.graph.node if n.op_type == "QuantizeLinear")
    assert first_q.input[0] == conv.output[0]
    assert not first_q.name.startswith(PREFIX_NODE_PREFIX)
    softmax = producer["probs"]
    assert softmax.op_type == "Softmax"
    assert producer[softmax.input[0]].op_type == "DequantizeLinear"  # float in, float out


def test_metadata_kept_and_quantisation_recorded(fashion_artifact, fashion_int8):
    props32 = {p.key: p.value for p in onnx.load_model(fashion_artifact).metadata_props}
    m = onnx.load_model(fashion_int8)
    props = {p.key: p.value for p in m.metadata_props}
    assert props["edgeinfer.spec"] == props32["edgeinfer.spec"]
    assert props["edgeinfer.labels"] == props32["edgeinfer.labels"]
    prov = json.loads(props["edgeinfer.provenance"])
    assert prov["format"] == "onnx" and prov["quantize"] == "int8"
    q = json.loads(props[KEY_QUANTIZATION])
    assert q["format"] == "QDQ" and q["scheme"] == "U8S8" and q["per_channel"] is True
    assert q["calibration_frames"] == 256
    assert {o.domain for o in m.opset_import} <= {"", "ai.onnx"}  # no ORT-only domains
    onnx.checker.check_model(m)


def test_quantize_int8_direct_call_keeps_props_and_takes_mixed_sizes(fashion_artifact,
                                                                     fashion_test):
    m = onnx.load_model(fashion_artifact)
    frames = [f for f in fashion_test.frames[:20]]
    frames += [np.resize(f, (40, 36, 3)).astype(np.uint8) for f in fashion_test.frames[:5]]
    q = quantize_int8(m, frames, per_channel=True, method="percentile")
    assert {p.key for p in m.metadata_props} < {p.key for p in q.metadata_props}
    assert ArtifactRunner(q.SerializeToString()).run(frames).shape == (25, 10)


def test_quantize_int8_refuses_no_frames_and_bad_method(fashion_artifact):
    m = onnx.load_model(fashion_artifact)
    with pytest.raises(ConversionError, match="calibration frames"):
        quantize_int8(m, [])
    with pytest.raises(ConversionError, match="calibration method"):
        quantize_int8(m, [np.zeros((28, 28, 3), np.uint8)], method="magic")


def test_frame_reader_groups_equal_sizes():
    frames = [np.zeros((4, 4, 3), np.uint8)] * 40 + [np.zeros((6, 5, 3), np.uint8)] * 3
    r = _FrameReader(frames, batch=32)
    shapes = []
    while (x := r.get_next()) is not None:
        shapes.append(x["frame"].shape)
    assert shapes == [(32, 4, 4, 3), (8, 4, 4, 3), (3, 6, 5, 3)]
    r.set_range(2, 3)
    assert r.get_next()["frame"].shape == (3, 6, 5, 3) and r.get_next() is None


def test_float_nodes_are_everything_upstream_of_the_prefix_output(fashion_artifact):
    m = onnx.load_model(fashion_artifact)
    names = set(float_nodes(m))
    prefix = {n.name for n in m.graph.node if n.name.startswith(PREFIX_NODE_PREFIX)}
    assert prefix <= names
    assert any(n.output[0] == PREFIX_OUTPUT and n.name in names for n in m.graph.node)
    assert "edgeinfer_softmax" in names
    assert not any(n.op_type in ("Gemm",) and n.name in names for n in m.graph.node)


def test_target_only_with_int8_onnx(tmp_path) -> None:
    """--target picks onnxruntime's int8 settings; elsewhere it is refused before any work."""
    from edgeinfer.cli import main
    from edgeinfer.errors import ConfigError

    for kw in ({"quantize": None}, {"quantize": "int8", "format": "tflite"}):
        out = tmp_path / ("x.tflite" if kw.get("format") else "x.onnx")
        with pytest.raises(ConfigError, match="--target"):
            convert("fashion", out, target="arm64", **kw)
    assert main(["convert", "fashion", "-o", str(tmp_path / "y.onnx"), "--target",
                 "x86-vnni"]) == 2
    assert not (tmp_path / "y.onnx").exists()
