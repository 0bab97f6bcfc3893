"""The converter's gate fails on top-1 agreement alone (issue 17: deleting that criterion
passed the suite, though the registry calls it the real int8 gate).

Real probabilities: the bundled fashion artifact on 400 real test images. The candidate
swaps the top two classes of the least confident frames, each by less than int8's
max |dprob| bound, so agreement is the only figure out of tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.converter.gate import gate
from edgeinfer.data.frames import load_frames
from edgeinfer.errors import ParityError
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.parity.stats import compare
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.runtime.metadata import read_metadata

N = 400
INT8 = tolerance("onnx", "int8")


@pytest.fixture(scope="module")
def real(fashion_artifact):
    frames = load_frames("builtin:fashion-test", read_metadata(fashion_artifact).spec, limit=N)
    probs = ArtifactRunner(fashion_artifact.read_bytes(), name="onnx-fp32").run(frames.frames)
    return frames, probs.astype(np.float64)


def _flip_least_confident(probs: np.ndarray, k: int) -> np.ndarray:
    """Swap top-1 and top-2 on the k frames whose two best classes are closest."""
    out = probs.copy()
    order = np.argsort(probs, -1)
    gap = probs[np.arange(len(probs)), order[:, -1]] - probs[np.arange(len(probs)), order[:, -2]]
    for i in np.argsort(gap)[:k]:
        a, b = order[i, -1], order[i, -2]
        out[i, a], out[i, b] = probs[i, b] - 1e-3, probs[i, a]
    return out


def test_agreement_alone_fails_the_gate(real):
    frames, ref = real
    cand = _flip_least_confident(ref, 8)  # 392 of 400 = 98% < 99%
    cmp = compare(ref, cand, INT8, "torch", "onnx-int8")
    assert cmp.max_abs <= INT8.max_abs and cmp.nonfinite == 0  # only agreement is out
    assert not cmp.passed
    assert cmp.problems() == ["top-1 agreement 98.00% < 99% vs torch"]
    said: list[str] = []
    with pytest.raises(ParityError, match=r"artifact not written: FAIL .*top-1 agreement=98\.00%"):
        gate(cand.astype(np.float32), "onnx-int8", "onnx", "int8", frames, {"torch": ref},
             said.append)
    assert said[0].startswith("FAIL onnx-int8 vs torch")


def test_agreement_at_the_bound_passes_the_tolerance(real):
    """The same construction at exactly 99% (4 of 400) is within tolerance: the test above
    fails because of agreement, not because of the way the candidate was built."""
    frames, ref = real
    cand = _flip_least_confident(ref, 4)
    res = gate(cand.astype(np.float32), "onnx-int8", "onnx", "int8", frames, {"torch": ref},
               lambda _m: None)
    assert res.primary.top1_agreement == 0.99 and res.primary.passed
    assert res.accuracies["verdict"] == "NOT CERTIFIED"  # 400 frames cannot certify 99%
