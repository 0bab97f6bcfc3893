"""The one certification rule and its words (parity/certify.py), and the default parity data
that a user's model is gated on when the user chose none (data/frames.py).

The probabilities here are constructed, not run: the rule is a statement about counts (how
many frames agree, out of how many, against which bound), so exact counts test it best.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgeinfer.data.frames import default_parity_data
from edgeinfer.errors import ConfigError
from edgeinfer.parity.certify import (
    FAIL,
    NOT_CERTIFIED,
    PASS,
    certify,
    frames_needed,
    frames_to_certify,
    qualified,
)
from edgeinfer.parity.stats import compare, wilson
from edgeinfer.parity.tolerances import tolerance
from edgeinfer.spec import PreprocessSpec

NOTE = "bundled photos only: not your data"


def _probs(n: int, disagree: int, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Reference and target one-hot-ish probabilities: ``disagree`` top-1 flips in ``n``."""
    rng = np.random.default_rng(n + disagree)
    cls = rng.integers(0, k, n)
    ref = np.full((n, k), 0.02)
    ref[np.arange(n), cls] = 1 - 0.02 * (k - 1)
    out = ref.copy()
    for i in range(disagree):  # swap the top two classes, well within max|dprob| for int8
        j = (cls[i] + 1) % k
        out[i, cls[i]], out[i, j] = 0.44, 0.46
        ref[i, cls[i]], ref[i, j] = 0.46, 0.44
    return ref, out


def _int8(n: int, disagree: int):
    ref, out = _probs(n, disagree)
    return compare(ref, out, tolerance("onnx", "int8"), "torch", "onnx-int8")


def test_one_disagreement_in_300_says_what_would_certify():
    """Issue 17: 299/300 (99.67%) was NOT CERTIFIED with a reason no user could act on."""
    cert = certify(_int8(300, 1))
    assert (cert.word, cert.base, cert.certified) == (NOT_CERTIFIED, NOT_CERTIFIED, False)
    assert cert.reason == ("1 of 300 frames disagree; to certify >= 99% you need at least 878 "
                           "frames with at most 3 disagreements (95% lower bound now 98.14%)")
    assert cert.line() == f"{NOT_CERTIFIED} - {cert.reason}"


@pytest.mark.parametrize(("n", "d", "tail"), [
    (200, 0, "381 frames, all agreeing (95% lower bound now 98.12%)"),
    (500, 1, "726 frames with at most 2 disagreements (95% lower bound now 98.88%)"),
    (600, 2, "878 frames with at most 3 disagreements"),  # the rate of 1 in 300
])
def test_reason_wording(n, d, tail):
    assert certify(_int8(n, d)).reason.startswith(
        f"{d} of {n} frames disagree; to certify >= 99% you need at least {tail}")


def test_pass_has_no_reason():
    cert = certify(_int8(2000, 0))
    assert (cert.word, cert.base, cert.certified, cert.reason) == (PASS, PASS, True, "")
    assert cert.line() == PASS


def test_frames_to_certify_edges():
    assert frames_to_certify(0.99) == 381 and isinstance(frames_to_certify(0.99), int)
    assert frames_to_certify(0.1) == 1  # one agreeing frame already certifies 10%
    assert frames_to_certify(0.99, cap=100) is None  # not reachable within the cap
    assert frames_to_certify(1.0) is None


def test_frames_needed_edges():
    assert frames_needed(1.0, 0, 10) is None and frames_needed(0.99, 0, 0) is None
    assert frames_needed(0.99, 0, 1) == (381, 0)
    assert frames_needed(0.9999999, 0, 10) is None  # beyond ten million frames
    assert frames_needed(0.99997, 0, 10)[0] > 100_000  # beyond frames_to_certify's own cap


@pytest.mark.parametrize(("d", "n"), [(1, 300), (1, 500), (2, 300), (5, 1000), (0, 200)])
def test_frames_needed_is_the_least_that_certifies_at_the_observed_rate(d, n):
    k, j = frames_needed(0.99, d, n)
    rate = d / n
    assert wilson(k - j, k)[0] >= 0.99 > wilson(k - j - 1, k)[0]  # J is the most allowed
    assert j >= math.ceil(rate * k - 1e-9)  # the observed rate fits within J at K frames
    fewer = k - 1  # one frame less does not certify at that rate
    assert wilson(fewer - math.ceil(rate * fewer - 1e-9), fewer)[0] < 0.99


def test_a_rate_too_high_to_ever_certify_says_so():
    assert frames_needed(0.99, 1, 100) is None  # exactly 99%: the lower bound never gets there
    assert "no number of frames certifies" in certify(_int8(100, 1)).reason


@pytest.mark.parametrize(("n", "d", "word"), [(200, 0, NOT_CERTIFIED), (380, 0, NOT_CERTIFIED),
                                              (381, 0, PASS), (2000, 5, PASS),
                                              (200, 3, FAIL)])
def test_int8_words(n, d, word):
    assert certify(_int8(n, d)).word == word


def test_fp32_is_judged_on_the_point_estimate():
    ref, _ = _probs(6, 0)
    cmp = compare(ref, ref, tolerance("onnx", "fp32"), "torch", "onnx-fp32")
    assert certify(cmp).word == PASS  # 6 of 6: exact bound, nothing to certify statistically
    out = ref.copy()
    out[0, 0] += 2e-4  # one figure out of fp32's tolerance
    assert certify(compare(ref, out, tolerance("onnx", "fp32"))).word == FAIL


def test_nan_fails_and_extra_failures_fail():
    ref, out = _probs(1000, 0)
    out[3, 2] = np.nan
    assert certify(compare(ref, out, tolerance("onnx", "int8"))).base == FAIL
    cert = certify(_int8(2000, 0), extra_failures=["accuracy drop 2.00% > 1.0%"])
    assert (cert.word, cert.reason) == (FAIL, "accuracy drop 2.00% > 1.0%")
    two = certify(_int8(200, 3), extra_failures=["batch-size dependent"])
    assert two.reason == "top-1 agreement 98.50% < 99% vs torch; batch-size dependent"


def test_not_your_data_qualifies_pass_and_not_certified_never_fail():
    assert certify(_int8(2000, 0), NOTE).word == f"PASS ({NOTE})"
    assert certify(_int8(200, 0), NOTE).word == f"NOT CERTIFIED ({NOTE})"
    assert certify(_int8(200, 3), NOTE).word == FAIL
    assert qualified(PASS, None) == PASS


def test_default_data_resembles_the_model_input():
    """A gray 28x28 model is never gated on colour photos shrunk to 28x28 gray."""
    gray28 = PreprocessSpec(size=(28, 28), model_color="GRAY", mean=(0.5,), std=(0.5,))
    assert default_parity_data(gray28)[0] == "builtin:fashion-test"
    rgb224 = PreprocessSpec(size=(224, 224))
    assert default_parity_data(rgb224) == ("builtin:photos", NOTE)
    gray224 = PreprocessSpec(size=(224, 224), model_color="GRAY", mean=(0.5,), std=(0.5,))
    assert default_parity_data(gray224)[0] == "builtin:photos"
    with pytest.raises(ConfigError, match="pass --parity-data"):
        default_parity_data(PreprocessSpec(size=(8, 8)))
