"""The one comparison (parity/stats.py) and the tolerance registry, on exact counts: every
figure a verdict rests on is pinned to a value computed by hand here (mutation testing,
docs/mutation.md, showed which ones no test held)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.parity.stats import (
    REL_FLOOR,
    accuracy,
    compare,
    confusion,
    flip_matrix,
    flip_pairs,
    topk_agreement,
    wilson,
)
from edgeinfer.parity.tolerances import TOLERANCES, Tolerance, preprocess_tolerance, tolerance

TOL = Tolerance(0.1, 0.5, "test")


def _ref() -> np.ndarray:
    return np.array([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])


def test_compare_figures_by_hand():
    ref = _ref()
    out = ref.copy()
    out[3] = [0.4, 0.5, 0.1]  # one flip, |d| 0.1 on two classes
    out[0, 2] = 0.1005  # a tiny relative change on a 0.1 probability
    c = compare(ref, out, TOL, "torch", "onnx")
    assert (c.reference, c.target, c.n, c.flips, c.nonfinite) == ("torch", "onnx", 4, 1, 0)
    assert c.max_abs == pytest.approx(0.1) and c.top1_agreement == 0.75
    assert c.mean_abs == pytest.approx((0.2 + 0.0005) / 12)
    assert c.p99_abs == pytest.approx(np.percentile(np.abs(ref - out), 99))
    assert c.max_rel == pytest.approx(0.1 / 0.4)  # |d| / |p_ref| (0.4 -> 0.5)
    assert c.mean_rel == pytest.approx((0.1 / 0.5 + 0.1 / 0.4 + 0.0005 / 0.1) / 12)
    assert c.p99_rel == pytest.approx(np.percentile(
        np.abs(ref - out) / np.maximum(np.abs(ref), REL_FLOOR), 99))
    assert c.top1_ci95 == wilson(3, 4) and c.top5_agreement == 1.0
    assert (c.tolerance_max_abs, c.tolerance_min_top1) == (0.1, 0.5)
    assert c.passed and c.problems() == []
    d = c.to_dict()
    assert d["top1_ci95"] == list(wilson(3, 4)) and d["flips"] == 1


def test_rel_floor_bounds_the_relative_error_of_tiny_probabilities():
    ref = np.array([[1.0, 0.0]])
    out = np.array([[1.0, 1e-6]])
    assert compare(ref, out, TOL).max_rel == pytest.approx(1e-6 / REL_FLOOR)
    assert REL_FLOOR == 1e-3


@pytest.mark.parametrize(("edit", "problem"), [
    (lambda o: o.__setitem__((0, 0), 0.55), "max|dp| 1.50e-01 > 0.1 vs torch"),
    (lambda o: o.__setitem__((1, 1), np.nan), "1 NaN/inf outputs"),
])
def test_each_figure_fails_alone(edit, problem):
    ref = _ref()
    out = ref.copy()
    edit(out)
    c = compare(ref, out, TOL, "torch")
    assert not c.passed and problem in c.problems()


def test_agreement_alone_fails_and_the_bound_is_inclusive():
    ref = _ref()
    out = ref[[0, 1, 2, 3]].copy()
    out[2], out[3] = [0.3, 0.2, 0.25], [0.39, 0.41, 0.2]  # two flips, |d| <= 0.25
    c = compare(ref, out, Tolerance(0.3, 0.5, ""), "torch")
    assert c.top1_agreement == 0.5 and c.passed  # 50% >= 50%: inclusive
    c = compare(ref, out, Tolerance(0.3, 0.51, ""), "torch")
    assert not c.passed and c.problems() == ["top-1 agreement 50.00% < 51% vs torch"]


def test_inf_counts_and_fails():
    ref = _ref()
    out = ref.copy()
    out[0, 0] = np.inf
    c = compare(ref, out, Tolerance(np.inf, 0.0, ""))
    assert c.nonfinite == 1 and c.max_abs == np.inf and not c.passed


def test_shapes_must_match_and_empty_is_neutral():
    with pytest.raises(ValueError, match=r"shapes differ: a \(4, 3\) vs b \(3, 3\)"):
        compare(_ref(), _ref()[:3], TOL, "a", "b")
    e = compare(np.zeros((0, 3)), np.zeros((0, 3)), TOL)
    assert (e.n, e.max_abs, e.mean_abs, e.top1_agreement, e.top1_ci95) == (0, 0.0, 0.0, 1.0,
                                                                           (0.0, 1.0))


def test_summary_line():
    c = compare(_ref(), _ref(), TOL, "torch", "onnx")
    assert c.summary() == ("PASS onnx vs torch: n=4 max|dprob|=0.00e+00 (tol 0.1) top-1 "
                           "agreement=100.00% [95% CI 51.0%, 100.0%] (min 50%)")
    assert c.summary("NOT CERTIFIED").startswith("NOT CERTIFIED onnx vs torch")
    out = _ref()
    out[0, 0] = np.nan
    bad = compare(_ref(), out, TOL, "torch", "onnx")
    assert bad.summary().startswith("FAIL ") and bad.summary().endswith(" NON-FINITE=1")


def test_wilson_known_values():
    assert wilson(6, 6)[0] == pytest.approx(0.6097, abs=1e-4)  # the 6 of 6 photos
    assert wilson(6, 6)[1] == pytest.approx(1.0)
    lo, hi = wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(0, 0) == (0.0, 1.0)


def test_topk_agreement():
    ref = _ref()
    out = np.array([[0.1, 0.2, 0.7], [0.1, 0.6, 0.3], [0.5, 0.3, 0.2], [0.5, 0.4, 0.1]])
    assert topk_agreement(ref, out, k=1) == 0.5
    assert topk_agreement(ref, out, k=2) == 0.5  # frame 0 and 2: the reference's class is last
    assert topk_agreement(ref, out, k=3) == 1.0 and topk_agreement(ref, out) == 1.0
    assert topk_agreement(ref[:0], out[:0]) == 1.0


def test_accuracy_confusion_and_flips():
    ref = _ref()
    labels = np.array([0, 1, 1, 0])
    acc = accuracy(ref, labels)
    assert acc == {"accuracy": 0.75, "ci95": list(wilson(3, 4)), "n": 4}
    m = confusion(ref, labels)
    assert m.tolist() == [[2, 0, 0], [0, 1, 1], [0, 0, 0]]
    out = ref.copy()
    out[3] = [0.4, 0.5, 0.1]
    out[0] = [0.2, 0.7, 0.1]
    assert flip_matrix(ref, out).tolist() == [[0, 2, 0], [0, 1, 0], [0, 0, 1]]
    pairs = flip_pairs(ref, out, ["a", "b", "c"], ["f0", "f1", "f2", "f3"])
    assert pairs == [{"from": "a", "to": "b", "from_index": 0, "to_index": 1, "count": 2,
                      "examples": ["f0", "f3"]}]
    assert flip_pairs(ref, out, ["a"], limit=1)[0]["to"] == "1"  # no name: the index
    assert flip_pairs(ref, out, ["a", "b", "c"])[0]["examples"] == ["0", "3"]
    out[1] = [0.1, 0.3, 0.6]
    most = flip_pairs(ref, out, ["a", "b", "c"])
    assert [p["count"] for p in most] == [2, 1] and len(flip_pairs(ref, out, "abc", limit=1)) == 1


# ---------------------------------------------------------------- the tolerance registry
def test_registry_bounds_are_consistent():
    """The relations the verdicts rely on (values and reasons: parity/tolerances.py)."""
    assert tolerance("onnx", "fp32").min_top1 == 1.0 == tolerance("tflite", "fp32").min_top1
    assert tolerance("onnx", "int8").min_top1 == 0.99 == tolerance("tflite", "int8").min_top1
    assert tolerance("tflite", "fp16").min_top1 == 0.99
    assert tolerance("bn_fold", "fp32").max_abs < tolerance("onnx", "fp32").max_abs
    assert tolerance("onnx", "fp32").max_abs <= 1e-4 < tolerance("tflite", "fp16").max_abs
    assert tolerance("onnx", "int8").max_abs == 0.25
    assert all(t.reason and t.max_abs > 0 and 0 <= t.min_top1 <= 1
               for t in TOLERANCES.values())
    with pytest.raises(KeyError):
        tolerance("onnx", "int4")


def test_preprocess_tolerance_picks_antialias_first():
    assert preprocess_tolerance("linear", True) is tolerance("preprocess", "antialias")
    assert preprocess_tolerance("cubic", False) is tolerance("preprocess", "cubic")
    assert preprocess_tolerance("linear", False) is tolerance("preprocess", "linear")


# ---------------------------------------------------------------- what mutation testing found
def test_defaults_and_edges_pinned():
    """Each assertion here killed a surviving mutant (docs/mutation.md)."""
    c = compare(_ref(), _ref(), TOL)
    assert (c.reference, c.target) == ("reference", "target")
    e = compare(np.zeros((0, 3)), np.zeros((0, 3)), TOL)
    assert e.flips == 0
    assert tolerance("onnx") is tolerance("onnx", "fp32")
    assert accuracy(np.array([[0.2, 0.8]]), np.array([1]))["accuracy"] == 1.0
    assert confusion(_ref(), np.array([0, 1, 1, 0])).dtype == np.int64


def test_tolerance_bound_is_inclusive_in_both_places():
    ref = _ref()
    out = ref.copy()
    out[0, 0] += 0.0625  # exactly representable: |d| == the bound
    c = compare(ref, out, Tolerance(abs(out[0, 0] - ref[0, 0]), 0.5, ""))
    assert c.passed and c.problems() == []


def test_p99_is_not_the_max():
    rng = np.random.default_rng(0)
    ref = rng.dirichlet(np.ones(10), 200)
    out = ref + rng.normal(0, 1e-3, ref.shape)
    c = compare(ref, out, Tolerance(1.0, 0.0, ""))
    diff = np.abs(ref - out)
    assert c.p99_abs == pytest.approx(np.percentile(diff, 99)) and c.p99_abs < c.max_abs


def test_topk_against_a_full_sort_on_ten_classes():
    rng = np.random.default_rng(1)
    ref, out = rng.dirichlet(np.ones(10), 300), rng.dirichlet(np.ones(10), 300)
    rank = np.argsort(-out, -1)  # brute force: the reference class among the k best
    for k in (1, 2, 5, 6):
        want = float((rank[:, :k] == ref.argmax(-1)[:, None]).any(-1).mean())
        assert topk_agreement(ref, out, k) == want
    assert topk_agreement(ref, out) == float((rank[:, :5] == ref.argmax(-1)[:, None])
                                             .any(-1).mean())


def test_flip_pairs_limit_and_examples():
    k = 6
    ref = np.repeat(np.eye(k), k, axis=0)  # every (from, to) pair once, diagonal agreeing
    out = np.tile(np.eye(k), (k, 1))
    pairs = flip_pairs(ref, out, [str(i) for i in range(k)])
    assert len(pairs) == 20 and all(p["count"] == 1 for p in pairs)  # 30 pairs, 20 shown
    ref4 = np.repeat(np.eye(2)[:1], 4, axis=0)
    out4 = np.repeat(np.eye(2)[1:], 4, axis=0)
    assert flip_pairs(ref4, out4, ["a", "b"])[0]["examples"] == ["0", "1", "2"]
