"""The estimators' maths (runtime/monitor/estimate.py) on hand-made cases whose answers are
known, their anchoring on the real fashion reference, and the profile's place in the
artifact's metadata (KEY_MONITOR): stored only when built, read back unchanged, damage named."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeinfer.artifact import KEY_MONITOR, ArtifactMetadata
from edgeinfer.errors import ModelError
from edgeinfer.runtime.monitor import ESTIMATORS, ReferenceProfile, estimate_accuracy
from edgeinfer.runtime.monitor.estimate import (
    atc_threshold,
    calibrate,
    fit_temperature,
    interval,
    scores,
    tempered,
)


def _rows(top: list[float], k: int = 4) -> np.ndarray:
    """Probability rows whose top-1 probability is ``top`` (the rest spread evenly)."""
    t = np.asarray(top, np.float64)[:, None]
    rows = np.repeat((1 - t) / (k - 1), k, axis=1)
    rows[:, 0] = t[:, 0]
    return rows


def test_atc_threshold_on_a_hand_made_reference() -> None:
    score = np.arange(1, 11) / 10.0  # 0.1 ... 1.0
    correct = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1], bool)  # 70% right
    t = atc_threshold(score, correct)
    assert t == pytest.approx(0.3)
    assert np.mean(score > t) == pytest.approx(0.7)  # ATC's defining property
    assert atc_threshold(score, np.zeros(10, bool)) == 1.0  # nothing above: estimate 0
    t1 = atc_threshold(score, np.ones(10, bool))
    assert t1 < 0.1 and np.mean(score > t1) == 1.0


def test_atc_estimate_is_the_fraction_of_window_frames_above_the_threshold() -> None:
    ref = _rows([0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99])
    cal = calibrate(ref, np.array([1, 2, 0, 0, 0, 0, 0, 0, 0, 0]))  # 80% right
    assert cal["accuracy"] == pytest.approx(0.8)
    # 2 of 4 above the maxprob threshold 0.4 (a frame at it is not above it)
    window = _rows([0.35, 0.4, 0.9, 0.99])
    assert cal["atc_maxprob"] == pytest.approx(0.4)
    assert estimate_accuracy(window, cal, "atc_maxprob") == pytest.approx(0.5)
    # entropy orders these rows exactly as the top-1 probability does: same answer
    assert estimate_accuracy(window, cal, "atc_entropy") == pytest.approx(0.5)


def test_doc_and_average_confidence() -> None:
    cal = {"accuracy": 0.9, "mean_maxprob": 0.95, "temperature": 1.0}
    window = _rows([0.7, 0.9])  # mean confidence 0.8: 0.15 below the reference's
    assert estimate_accuracy(window, cal, "average_confidence") == pytest.approx(0.8)
    assert estimate_accuracy(window, cal, "doc") == pytest.approx(0.75)
    with pytest.raises(ValueError, match="unknown estimator"):
        estimate_accuracy(window, cal, "magic")


def test_entropy_score_and_temperature() -> None:
    one_hot = np.eye(3)[[0]]
    uniform = np.full((1, 3), 1 / 3)
    assert scores(one_hot, "entropy")[0] == pytest.approx(0.0, abs=1e-9)
    assert scores(uniform, "entropy")[0] == pytest.approx(-np.log(3))
    p = np.array([[0.7, 0.2, 0.1]])
    assert tempered(p, 1.0) is p
    hot, cold = tempered(p, 0.5), tempered(p, 4.0)
    assert hot[0, 0] > 0.7 > cold[0, 0] and np.allclose(hot.sum(), 1) and np.allclose(
        cold.sum(), 1)


def test_temperature_fit_recovers_an_over_confident_model() -> None:
    rng = np.random.default_rng(3)
    z = rng.normal(0, 2.0, (6000, 10))
    truth = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(10, p=row) for row in truth])
    probs = tempered(truth, 0.5)  # logits doubled: the model claims more than it knows
    assert fit_temperature(probs, labels) == pytest.approx(2.0, rel=0.1)
    assert fit_temperature(truth, labels) == pytest.approx(1.0, rel=0.1)
    assert fit_temperature(probs[:5], labels[:5]) == 1.0  # too few to fit


def test_every_estimator_reads_the_reference_back(fashion) -> None:
    """On the reference frames themselves every ATC variant returns the reference accuracy
    (that is how its threshold was chosen); DoC does by definition."""
    cal = calibrate(fashion.ref_probs, fashion.ref_labels)
    for method in ESTIMATORS:
        est = estimate_accuracy(fashion.ref_probs, cal, method)
        if method.startswith(("atc_", "doc")):
            assert est == pytest.approx(cal["accuracy"], abs=2 / len(fashion.ref_labels)), method
        assert 0.0 <= est <= 1.0


def test_interval_holds_both_sources_of_uncertainty() -> None:
    lo, hi = interval(0.9, 300, 2000)
    assert lo < 0.9 < hi
    lo_big, hi_big = interval(0.9, 30000, 2000)
    assert hi_big - lo_big < hi - lo  # a longer window narrows it ...
    lo_ref, hi_ref = interval(0.9, 30000, 100000)
    assert hi_ref - lo_ref < hi_big - lo_big  # ... and so does a larger reference
    assert interval(1.0, 10, 10) == (1.0, 1.0) and interval(1.3, 10, 10)[1] == 1.0


def test_the_profile_rides_in_the_metadata_only_when_built(fashion) -> None:
    meta = fashion.predictor.metadata
    bare = ArtifactMetadata(meta.spec, meta.labels, meta.provenance, meta.parity)
    assert KEY_MONITOR not in bare.to_props()
    assert ArtifactMetadata.from_props(bare.to_props()).monitor == {}
    stored = ArtifactMetadata(meta.spec, meta.labels, monitor=fashion.profile.to_dict())
    back = ArtifactMetadata.from_props(json.loads(json.dumps(stored.to_props())))
    assert ReferenceProfile.from_dict(back.monitor) == fashion.profile
    props = stored.to_props() | {KEY_MONITOR: "[1, 2]"}
    with pytest.raises(ModelError, match="edgeinfer.monitor is list"):
        ArtifactMetadata.from_props(props)
