"""The one softmax and the one logits-or-probabilities rule (edgeinfer.probs)."""

from __future__ import annotations

import numpy as np

from edgeinfer.probs import SUM_TOL, are_probabilities, as_probabilities, softmax


def test_softmax_is_stable_and_sums_to_one():
    z = np.array([[1000.0, 1001.0, 999.0], [-5.0, 0.0, 5.0]])
    p = softmax(z)
    assert np.all(np.isfinite(p)) and np.allclose(p.sum(-1), 1.0)
    assert np.array_equal(p.argmax(-1), z.argmax(-1))
    assert np.allclose(p[0], softmax(z[0] - 1000.0))


def test_a_softmax_output_is_recognised_and_left_alone():
    p = softmax(np.random.default_rng(0).normal(size=(8, 1000)).astype(np.float32))
    assert are_probabilities(p)
    assert as_probabilities(p) is not None and np.array_equal(as_probabilities(p), p)


def test_logits_get_a_softmax():
    z = np.array([[2.0, -1.0, 0.5]])
    assert not are_probabilities(z)
    assert np.allclose(as_probabilities(z), softmax(z))


def test_non_negative_rows_that_do_not_sum_to_one_are_logits():
    relu_out = np.array([[0.2, 0.3, 0.4]])  # sums to 0.9: a ReLU head, not probabilities
    assert not are_probabilities(relu_out)
    nearly = np.array([[0.5, 0.5 + 2 * SUM_TOL]])
    assert not are_probabilities(nearly)
    assert are_probabilities(np.array([[0.5, 0.5 + SUM_TOL / 2]]))


def test_one_row_of_logits_makes_the_batch_logits():
    batch = np.vstack([softmax(np.array([1.0, 2.0, 3.0])), [0.1, 0.2, 0.3]])
    assert not are_probabilities(batch)


def test_nan_and_empty_are_not_probabilities():
    assert not are_probabilities(np.array([[np.nan, 1.0]]))
    assert not are_probabilities(np.zeros((0, 3)))


def test_an_exact_zero_is_still_a_probability():
    # float32 softmax underflows to exactly 0 for logits ~100 below the max
    p = softmax(np.array([[0.0, -200.0]], np.float32))
    assert p[0, 1] == 0.0 and are_probabilities(p)


def test_one_vector_is_judged_along_its_classes():
    assert are_probabilities(np.array([0.25, 0.75]))
    assert not are_probabilities(np.array([0.25, 0.5]))
