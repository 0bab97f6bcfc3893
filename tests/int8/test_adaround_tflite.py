"""AdaRound's TFLite side (converter/int8/adaround_tflite.py) on the trained fashion model.

What must hold whatever the rounding: the layers are read in the layout and padding TFLite
computes them with (the pre-activation output rebuilt in torch from the fp32 model's own
layer input, activated, is the fp32 model's layer output), round-to-nearest through the
write-back reproduces ai_edge_quantizer's int8 buffers byte for byte, and a buffer written
back is what both signatures then compute with. Then AdaRound itself (helper A's core) must
not lower the agreement with fp32 on the 10,000 test images it never saw.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.artifact import SIG_RESIZED, TFLITE_PREFIX_SCOPE
from edgeinfer.converter.export.tflite_metadata import embed_metadata
from edgeinfer.converter.int8 import adaround_tflite as at
from edgeinfer.converter.int8.tflite_quant import TfliteInt8, calibration_inputs
from edgeinfer.data.frames import load_frames
from edgeinfer.errors import ConversionError
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.runtime.metadata import read_metadata

INT8 = 9  # ai_edge_litert's schema.TensorType.INT8


def nearest(weight, scale, inputs, target, *, qmin, qmax, **_kw) -> np.ndarray:
    """ai_edge_quantizer's own rounding with adaround_layer's signature: np.rint of w / s,
    clipped (uniform_quantize_tensor._round_and_clip_inplace, narrow range)."""
    s = np.asarray(scale, np.float32).reshape((-1,) + (1,) * (weight.ndim - 1))
    return np.clip(np.rint(weight / s), qmin, qmax).astype(np.int8)


def test_same_padding_puts_the_odd_pixel_bottom_right() -> None:
    # TensorFlow's SAME: out = ceil(in / stride), the odd pad row/column after the data
    assert at.explicit_pads(True, (7, 7), (3, 3), (2, 2), (1, 1)) == (1, 1, 1, 1)
    assert at.explicit_pads(True, (8, 6), (3, 3), (2, 2), (1, 1)) == (0, 0, 1, 1)
    assert at.explicit_pads(True, (14, 14), (5, 5), (1, 1), (1, 1)) == (2, 2, 2, 2)
    assert at.explicit_pads(True, (9, 9), (3, 3), (1, 1), (2, 2)) == (2, 2, 2, 2)
    assert at.explicit_pads(False, (9, 9), (3, 3), (2, 2), (1, 1)) == (0, 0, 0, 0)


def test_layouts_round_trip_and_group_per_input_channel() -> None:
    rng = np.random.default_rng(0)
    ohwi = rng.normal(size=(4, 3, 5, 2)).astype(np.float32)
    w, g = at.to_torch("CONV_2D", ohwi, 2)
    assert w.shape == (4, 2, 3, 5) and g == 1 and w[1, 0, 2, 4] == ohwi[1, 2, 4, 0]
    assert np.array_equal(at.from_torch("CONV_2D", w), ohwi)
    dw = rng.normal(size=(1, 3, 3, 6)).astype(np.float32)  # 2 input channels x 3 multiplier
    w, g = at.to_torch("DEPTHWISE_CONV_2D", dw, 2)
    assert w.shape == (6, 1, 3, 3) and g == 2 and w[5, 0, 1, 2] == dw[0, 1, 2, 5]
    assert np.array_equal(at.from_torch("DEPTHWISE_CONV_2D", w), dw)


@pytest.fixture(scope="module")
def fashion_int8(fashion_tflite):
    """(fp32 artifact bytes, its metadata, the builder, calibration samples of 'resized')."""
    data = fashion_tflite.path.read_bytes()
    meta = read_metadata(data)
    hw = tuple(meta.provenance["frame_size"])
    cal = load_frames("builtin:fashion-train", meta.spec, limit=64).frames
    q = TfliteInt8(data, meta.spec, hw, cal)
    samples = calibration_inputs(meta.spec, hw, cal)[SIG_RESIZED]
    return data, meta, q, samples


def _check_layers(model: bytes, found: list, samples: list) -> None:
    """act(pre-activation rebuilt in torch) == the fp32 model's own layer output: a wrong
    layout, group or padding is a wrong convolution and far off."""
    obj = at.read_model(model)
    t = obj.subgraphs[at._signature_subgraph(obj, SIG_RESIZED)].tensors
    bound = tolerance("tflite", "fp32").max_abs
    for lay in found:
        w, group = at.to_torch(lay.op, at._array(obj, t[lay.w], np.float32),
                               int(t[lay.x].shape[-1]))
        b = None if lay.b is None else at._array(obj, t[lay.b], np.float32)
        x, out = at._Activations(model, SIG_RESIZED, [lay.x, lay.out], 2).collect(
            samples, [lay.x, lay.out])
        x = at._layout(x, w)
        pads = ((0, 0, 0, 0) if lay.kind == "linear" else
                at.explicit_pads(lay.same, x.shape[2:], w.shape[2:], lay.stride, lay.dilation))
        pre = at.preactivation(lay, x, w, b, group, pads)
        act = {0: pre, 1: np.maximum(pre, 0), 3: np.clip(pre, 0, 6)}[lay.activation]
        out = out.transpose(0, 3, 1, 2) if out.ndim == 4 else out
        assert np.abs(act - out).max() <= bound * max(1.0, np.abs(out).max()), lay


@pytest.mark.slow
def test_layers_are_read_as_tflite_computes_them(fashion_int8) -> None:
    _data, _meta, q, samples = fashion_int8
    obj, qobj = at.read_model(q.float_model), at.read_model(q.build())
    sg = at._signature_subgraph(obj, SIG_RESIZED)
    found = [f for _q, f in at.pairs(qobj, sg, obj, sg)]
    kinds = [lay.op for lay in found]
    assert kinds == ["DEPTHWISE_CONV_2D", "CONV_2D", "CONV_2D", "FULLY_CONNECTED",
                     "FULLY_CONNECTED"], kinds  # every int8 layer, the float prefix's not
    _check_layers(q.float_model, found, samples[:8])


@pytest.mark.slow
def test_asymmetric_same_padding_on_efficientnet(effnet_tflite) -> None:
    """EfficientNet-Lite0's stride-2 depthwise convs are SAME on even sizes: TFLite pads
    them (0, 0, 1, 1) and (1, 1, 2, 2), which fashion's stride-1 convs never show."""
    data = effnet_tflite.path.read_bytes()
    meta = read_metadata(data)
    hw = tuple(meta.provenance["frame_size"])
    cal = load_frames("builtin:photos", meta.spec, limit=2).frames
    samples = calibration_inputs(meta.spec, hw, cal)[SIG_RESIZED]
    obj = at.read_model(data)
    sg = at._signature_subgraph(obj, SIG_RESIZED)
    found = [lay for lay in at.layers(obj, sg, int8_only=False)
             if TFLITE_PREFIX_SCOPE not in obj.subgraphs[sg].tensors[lay.out].name.decode()]
    strided = [lay for lay in found if lay.same and lay.stride == (2, 2)]
    assert len(found) == 50 and len(strided) == 4, (len(found), len(strided))
    _check_layers(data, strided + found[:3] + found[-2:], samples)


@pytest.mark.slow
def test_nearest_rounding_writes_back_the_quantizers_own_bytes(fashion_int8) -> None:
    _data, _meta, q, samples = fashion_int8
    plain = q.build()
    back, info = at.reconstruct(plain, q.float_model, samples, SIG_RESIZED,
                                round_fn=nearest, frames=16)
    assert info["layers"] == 5 and info["changed_weights"] == 0, info
    a, b = at.read_model(plain), at.read_model(back)
    assert len(a.buffers) == len(b.buffers)
    for x, y in zip(a.buffers, b.buffers, strict=True):
        assert np.array_equal(np.asarray(x.data), np.asarray(y.data))


@pytest.mark.slow
def test_a_written_back_buffer_changes_both_signatures(fashion_int8) -> None:
    """Every weight rounded down instead of to nearest: the file changes, and both
    signatures (which share the weight buffers) compute with the new weights."""
    _data, meta, q, samples = fashion_int8

    def floor(weight, scale, inputs, target, *, qmin, qmax, **_kw):
        s = np.asarray(scale, np.float32).reshape((-1,) + (1,) * (weight.ndim - 1))
        return np.clip(np.floor(weight / s), qmin, qmax).astype(np.int8)

    plain = q.build()
    down, info = at.reconstruct(plain, q.float_model, samples, SIG_RESIZED, round_fn=floor,
                                frames=4)
    assert info["changed_weights"] > 0
    test = load_frames("builtin:fashion-test", meta.spec, limit=200).frames
    odd = [np.ascontiguousarray(np.pad(f, ((0, 4), (0, 4), (0, 0)))) for f in test]
    for frames in (test, odd):  # 'frame' signature, then 'resized'
        p0 = ArtifactRunner(embed_metadata(plain, meta.to_props())).run(frames)
        p1 = ArtifactRunner(embed_metadata(down, meta.to_props())).run(frames)
        assert np.abs(p1 - p0).max() > 1e-3


@pytest.mark.slow
def test_adaround_builds_keep_agreement_and_their_roundings(fashion_tflite) -> None:
    """TfliteInt8(method='adaround'): on the 10,000 test images it never saw, agreement
    with fp32 is not below ai_edge_quantizer's nearest rounding (measured 99.53% ->
    99.63%); the roundings are fitted once and a later build with a layer kept float keeps
    them in the layers still int8."""
    data = fashion_tflite.path.read_bytes()
    meta = read_metadata(data)
    hw = tuple(meta.provenance["frame_size"])
    cal = load_frames("builtin:fashion-train", meta.spec, limit=256).frames
    test = load_frames("builtin:fashion-test", meta.spec).frames
    plain = TfliteInt8(data, meta.spec, hw, cal).build()
    q = TfliteInt8(data, meta.spec, hw, cal, method="adaround")
    ada = q.build()
    assert q.rounding.info["layers"] == 5 and q.rounding.info["changed_weights"] > 1000

    def top1(model: bytes) -> np.ndarray:
        return ArtifactRunner(embed_metadata(model, meta.to_props())).run(test).argmax(1)

    ref = ArtifactRunner(data).run(test).argmax(1)
    before, after = (top1(plain) == ref).mean(), (top1(ada) == ref).mean()
    assert after >= before, (before, after)
    assert q.build() == ada  # fitted once
    one_float = at.read_model(q.build(q.candidates[:1]))
    int8 = [t for sg in one_float.subgraphs for t in sg.tensors
            if t.name in q.rounding.weights and t.type == INT8]
    assert len({t.name for t in int8}) >= 4  # the layers still int8 (weights, not biases)
    assert all(np.array_equal(at._array(one_float, t, np.int8), q.rounding.weights[t.name])
               for t in int8)
    with pytest.raises(ConversionError, match="not one of"):
        TfliteInt8(data, meta.spec, hw, cal[:4], method="gptq")
