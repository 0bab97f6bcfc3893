"""int8's probability bound is judged on the 99th-percentile frame, not the max (issue 26).

A maximum over N frames grows with N: an int8 EfficientNet-Lite0 agreeing with fp32 on
99.1% of 1000 photos was refused because one near-tie photo moved by 0.39 (its first 600
photos: max 0.053). These are unit tests of the rule, not of a model: the reference is the
fashion fp32 artifact's probabilities on real Fashion-MNIST test images, and the "int8"
output is that reference with chosen frames perturbed by hand, so the figures are known.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.data.frames import load_frames
from edgeinfer.parity.certify import against
from edgeinfer.parity.runners import ArtifactRunner
from edgeinfer.parity.stats import compare
from edgeinfer.parity.tolerances import FRAME_P99, MAX, Tolerance, pack_entries, tolerance
from edgeinfer.runtime.metadata import read_metadata

N = 1000
INT8 = [("onnx", "int8"), ("tflite", "int8")]


@pytest.fixture(scope="module")
def real_probs(fashion_artifact) -> np.ndarray:
    """The fp32 artifact's probabilities on the first 1000 Fashion-MNIST test images."""
    spec = read_metadata(str(fashion_artifact)).spec
    frames = load_frames("builtin:fashion-test", spec, limit=N).frames
    return ArtifactRunner(str(fashion_artifact)).run(frames)


def moved(ref: np.ndarray, every: int, by: float) -> tuple[np.ndarray, np.ndarray]:
    """``ref`` with one frame in ``every`` (spread over the confident ones, top class >=
    0.9) giving ``by`` of its top class's probability to the runner-up: still a
    distribution, top-1 kept where it stays ahead."""
    out = ref.copy()
    confident = np.flatnonzero(ref.max(-1) >= 0.9)
    k = len(ref) // every
    chosen = confident[np.linspace(0, len(confident) - 1, k).astype(int)]
    for i in chosen:
        top, second = np.argsort(-ref[i])[:2]
        out[i, top] -= by
        out[i, second] += by
    return out, chosen


@pytest.mark.parametrize("key", INT8)
def test_one_near_tie_frame_in_200_does_not_fail_int8(real_probs, key):
    """Failed before the fix: max|dprob| 0.4 > 0.25 refused an int8 agreeing on >= 99%."""
    out, chosen = moved(real_probs, 200, 0.4)
    assert len(chosen) == N // 200
    tol = tolerance(*key)
    c = compare(real_probs, out, tol, "onnx-fp32", "int8")
    assert c.top1_agreement >= tol.min_top1
    assert c.passed, c.summary()
    assert c.max_abs == pytest.approx(0.4)  # the max is still reported
    assert c.frame_p99_abs < 1e-9  # five moved frames in 1000 sit above the 99th percentile
    assert c.problems() == []


@pytest.mark.parametrize("key", INT8)
def test_a_systematic_distortion_still_fails_int8(real_probs, key):
    """5% of the frames move by 0.3, top-1 unchanged: agreement is 100%, the probability
    bound alone refuses it."""
    out, chosen = moved(real_probs, 20, 0.3)
    assert len(chosen) == N // 20
    c = compare(real_probs, out, tolerance(*key), "onnx-fp32", "int8")
    assert c.top1_agreement == 1.0
    assert not c.passed
    assert c.frame_p99_abs == pytest.approx(0.3)
    assert c.problems() == ["p99-frame|dp| 3.00e-01 > 0.25 (max 3.00e-01) vs onnx-fp32"]


def test_frame_p99_is_the_percentile_of_each_frames_max():
    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(10), 300)
    out = ref + rng.normal(0, 1e-3, ref.shape)
    c = compare(ref, out, Tolerance(1.0, 0.0, ""))
    per_frame = np.abs(ref - out).max(-1)
    assert c.frame_p99_abs == pytest.approx(np.percentile(per_frame, 99))
    assert c.p99_abs < c.frame_p99_abs < c.max_abs
    assert c.to_dict()["frame_p99_abs"] == c.frame_p99_abs
    assert c.to_dict()["tolerance_over"] == MAX
    assert compare(ref[:0], out[:0], Tolerance(1.0, 0.0, "")).frame_p99_abs == 0.0


def test_every_other_tolerance_still_bounds_the_max(real_probs):
    """fp32, fp16, preprocessing, consistency: no frame may exceed a rounding-level bound."""
    from edgeinfer.parity.tolerances import TOLERANCES

    assert {k for k, t in TOLERANCES.items() if t.over == FRAME_P99} == set(INT8)
    out, _ = moved(real_probs, 200, 1e-3)
    c = compare(real_probs, out, tolerance("tflite", "fp16"), "onnx-fp32", "fp16")
    assert c.frame_p99_abs < 1e-9 and c.max_abs == pytest.approx(1e-3)
    assert c.passed  # 1e-3 <= 1e-2
    c = compare(real_probs, out, tolerance("onnx", "fp32"), "torch", "onnx-fp32")
    assert not c.passed and c.problems() == ["max|dp| 1.00e-03 > 0.0001 vs torch"]


def test_against_judges_by_the_same_rule(real_probs):
    """convert's budget-only int8 states its figures with certify.against: the same verdict
    as compare under that tolerance, whichever tolerance it was measured with."""
    one, _ = moved(real_probs, 200, 0.4)
    many, _ = moved(real_probs, 20, 0.3)
    for out in (one, many):
        for key in INT8:
            measured = compare(real_probs, out, Tolerance(float("inf"), 0.0, ""))
            direct = compare(real_probs, out, tolerance(*key))
            assert against(measured, tolerance(*key)) == direct
    back = against(compare(real_probs, one, tolerance("onnx", "int8")), Tolerance(0.25, 0.99, ""))
    assert back.tolerance_over == MAX and not back.passed  # the max, 0.4, judged again


def test_summary_prints_the_judged_figure_and_the_tolerance_as_it_is(real_probs):
    """The old summary printed the 0.25 tolerance as 'tol 2e-01'."""
    out, _ = moved(real_probs, 200, 0.4)
    c = compare(real_probs, out, tolerance("onnx", "int8"), "onnx-fp32", "onnx-int8")
    s = c.summary()
    assert s.startswith(f"PASS onnx-int8 vs onnx-fp32: n={N} p99-frame|dprob|=")
    assert "(tol 0.25) max|dprob|=4.00e-01 (reported) top-1 agreement=" in s
    assert c.bound_text() == "p99-frame|dp| <= 0.25, top-1 >= 99%"
    assert c.abs_text() == f"4.00e-01 (p99-frame {c.frame_p99_abs:.1e})"
    f = compare(real_probs, out, tolerance("onnx", "fp32"))
    assert "max|dprob|=4.00e-01 (tol 0.0001) top-1" in f.summary()
    assert f.abs_text() == "4.00e-01" and f.bound_text() == "max|dp| <= 0.0001, top-1 >= 100%"


def test_packs_store_the_statistic_and_tolerances_refuse_an_unknown_one():
    entries = pack_entries()
    assert entries["onnx/int8"]["over"] == FRAME_P99 == entries["tflite/int8"]["over"]
    assert "over" not in entries["onnx/fp32"]  # entries written before `over` read the same
    with pytest.raises(ValueError, match="Tolerance.over must be one of"):
        Tolerance(0.1, 1.0, "", over="p95")


def test_a_pack_manifest_types_the_statistic():
    from edgeinfer.data.packschema import ManifestError, check_manifest

    bad = pack_entries()
    bad["onnx/int8"]["over"] = 3
    with pytest.raises(ManifestError, match=r"field tolerances.onnx/int8.over must be a str"):
        check_manifest({"tolerances": bad})


def test_convert_and_info_name_the_judged_figure_of_an_int8_entry(real_probs):
    """``edgeinfer convert`` and ``info`` print an artifact's stored parity entry: an int8
    PASS beside a max above 0.25 must say which figure was judged."""
    from edgeinfer.parity.stages import parity_figure

    out, _ = moved(real_probs, 200, 0.4)
    entry = compare(real_probs, out, tolerance("onnx", "int8")).to_dict()
    assert parity_figure(entry) == "max|dprob| 4.00e-01 (p99-frame 0.00e+00, judged)"
    fp32 = compare(real_probs, out, tolerance("onnx", "fp32")).to_dict()
    assert parity_figure(fp32) == "max|dprob| 4.00e-01"
