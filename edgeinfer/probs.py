"""Logits or probabilities: the one softmax and the one rule that tells them apart.

Why one place: the framework runners, the TFLite backend, the pack writer and the doctor's
simulation all receive a model's raw outputs, and some models end in a Softmax while others
end in logits. Guessing that three ways gave three answers at the edges; here it is one rule.

The rule: every row is finite, non-negative and sums to 1 within :data:`SUM_TOL`. A float32
softmax over K <= 10^4 classes sums to 1 within ~1e-6; logits that happen to be non-negative
and to sum to 1 within 1e-4 on *every* row of a batch do not occur in practice, and where
it matters (the pack) the whole batch is judged at once.
"""

from __future__ import annotations

import numpy as np

#: Rows summing to 1 within this (and non-negative, finite) are probabilities already.
SUM_TOL = 1e-4


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """The numerically stable softmax along ``axis`` (the dtype of ``z`` is kept)."""
    z = np.asarray(z)
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def are_probabilities(y: np.ndarray) -> bool:
    """True when every row of ``y`` already is a probability vector (a final Softmax)."""
    y = np.asarray(y)
    if y.size == 0 or not np.all(np.isfinite(y)):
        return False
    return bool((y >= 0).all() and np.abs(y.sum(-1) - 1).max() < SUM_TOL)


def as_probabilities(y: np.ndarray) -> np.ndarray:
    """``y`` itself when it already holds probabilities, else its softmax (argmax unchanged)."""
    return np.asarray(y) if are_probabilities(y) else softmax(y)
