"""The artifact's feature-moments output (converter/moments.py) on the real fashion artifact:
probabilities unchanged bit for bit, moments equal to numpy's over the tapped activations,
and the monitor's feature drift moving on a real shift and not on healthy frames."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import helper

from edgeinfer.artifact import MOMENTS_OUTPUT, OUTPUT_NAME
from edgeinfer.converter.moments import taps, with_moments
from edgeinfer.data.datasets import load_fashion_mnist
from edgeinfer.data.frames import to_frame_color
from edgeinfer.runtime.monitor import Monitor


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    im, _ = load_fashion_mnist("test")
    return np.stack([to_frame_color(f, "BGR") for f in im[9000:9064]])


def _session(m: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])


def test_the_artifact_carries_moments_and_probs_are_unchanged(fashion_artifact, frames) -> None:
    m = onnx.load(str(fashion_artifact))
    assert [o.name for o in m.graph.output] == [OUTPUT_NAME, MOMENTS_OUTPUT]
    plain = onnx.ModelProto()
    plain.CopyFrom(m)
    keep = [n for n in plain.graph.node if not n.name.startswith("edgeinfer_mom/")]
    del plain.graph.node[:]
    plain.graph.node.extend(keep)
    del plain.graph.output[1:]
    a = _session(m).run([OUTPUT_NAME], {"frame": frames})[0]
    b = _session(plain).run([OUTPUT_NAME], {"frame": frames})[0]
    assert np.array_equal(a, b)
    again, names = with_moments(plain)
    assert names == taps(plain) and len(names) == 2
    c, mom = _session(again).run(None, {"frame": frames})
    assert np.array_equal(a, c)
    # the moments are the spatial mean and std of the tapped activations, per channel
    probe = onnx.ModelProto()
    probe.CopyFrom(plain)
    for t in names:
        probe.graph.output.append(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT,
                                                                None))
    acts = _session(probe).run(names, {"frame": frames})
    want = np.concatenate([a.mean(axis=(2, 3)) for a in acts]
                          + [a.std(axis=(2, 3)) for a in acts], axis=1)
    np.testing.assert_allclose(mom, want, rtol=1e-4, atol=1e-5)
    # taps sit after the activation that is the conv's only consumer
    producers = {o: n for n in plain.graph.node for o in n.output}
    assert all(producers[t].op_type == "Relu" for t in names)


def test_feature_drift_moves_on_a_shift_only(fashion) -> None:
    """The fixture's profile was built with the artifact's moments on the reference."""
    assert fashion.profile.features
    backend = fashion.predictor.backend
    healthy = Monitor(fashion.profile)
    dark = Monitor(fashion.profile)
    for i in range(0, 600, 50):
        f = np.stack(fashion.frames[i:i + 50])
        p, mom = backend.run_moments(f)
        healthy.update(p, f, features=mom)
        g = (f * 0.5).astype(np.uint8)
        p, mom = backend.run_moments(g)
        dark.update(p, g, features=mom)
    assert healthy.report().drift["features"] < 0.3
    assert dark.report().drift["features"] > 0.5
    assert "features" in dark.report().drifted


def test_without_moments_gives_the_model_back(fashion_artifact) -> None:
    """What quantisation and the int8 layer diagnosis see: the model with no moments."""
    from edgeinfer.converter.moments import without_moments

    m = onnx.load(str(fashion_artifact))
    bare = without_moments(m)
    assert [o.name for o in bare.graph.output] == [OUTPUT_NAME]
    assert not any(n.name.startswith("edgeinfer_mom/") for n in bare.graph.node)
    assert len(bare.graph.node) == len(m.graph.node) - 7 * 2 - 1
    again, _ = with_moments(bare)
    assert [o.name for o in again.graph.output] == [OUTPUT_NAME, MOMENTS_OUTPUT]
    assert without_moments(bare) is bare
