"""TFLite layers kept float by the accuracy control's builder (TfliteInt8), on the trained
fashion model: a layer kept float must be float in BOTH signatures with its activation and
residual ops, or its quantisation error stays."""

from __future__ import annotations

import numpy as np

from edgeinfer.converter.export.tflite_metadata import embed_metadata
from edgeinfer.converter.int8.tflite_quant import TfliteInt8
from edgeinfer.data.frames import load_frames
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.runtime.metadata import read_metadata


def test_layers_kept_float_are_float_in_both_signatures(fashion_tflite):
    data = fashion_tflite.path.read_bytes()
    meta = read_metadata(data)
    hw = tuple(meta.provenance["frame_size"])
    cal = load_frames("builtin:fashion-train", meta.spec, limit=64).frames
    test = load_frames("builtin:fashion-test", meta.spec, limit=300).frames
    odd = [np.ascontiguousarray(np.pad(f, ((0, 4), (0, 4), (0, 0)))) for f in test[:50]]
    q = TfliteInt8(data, meta.spec, hw, cal)
    assert 3 <= len(q.candidates) <= 10, q.candidates  # conv/fc layers of the fashion net
    labels = [q.labels[c] for c in q.candidates]  # readable: module attribute paths
    assert len(set(labels)) == len(labels) and all("/" not in v for v in labels), labels

    def probs(model: bytes, frames) -> np.ndarray:
        return ArtifactRunner(embed_metadata(model, meta.to_props())).run(frames)

    for frames in (test, odd):  # 'frame' signature, then 'resized' (frames of another size)
        ref = ArtifactRunner(data).run(frames)
        plain = probs(q.build(), frames)
        all_float = probs(q.build(q.candidates), frames)
        assert np.abs(plain - ref).max() > 1e-3  # really quantised
        assert np.abs(all_float - ref).max() < 1e-5  # every group float: the fp32 model
    one = probs(q.build(q.candidates[:1]), test)
    assert not np.array_equal(one, probs(q.build(), test))
