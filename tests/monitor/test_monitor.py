"""The lean monitor on real frames through the real fashion artifact: no alarm on healthy
frames, an alarm with the right cause on real shifts, honest 'unknown' and 'not estimated'."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeinfer.runtime.monitor import Monitor, ReferenceProfile, build_profile
from edgeinfer.runtime.monitor.drift import SIM_FRAMES, Cusum, simulated_threshold


def _darker(frames: list[np.ndarray], factor: float = 0.25) -> list[np.ndarray]:
    return [(f * factor).astype(np.uint8) for f in frames]


def _noisy(frames: list[np.ndarray], std: float = 40.0, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.clip(f + rng.normal(0, std, f.shape), 0, 255).astype(np.uint8) for f in frames]


def _feed(m: Monitor, fx, frames: list[np.ndarray], step: int = 10) -> None:
    for i in range(0, len(frames), step):
        chunk = frames[i:i + step]
        m.update(fx.run(chunk), chunk)


def test_healthy_frames_raise_no_alarm_and_estimate_the_accuracy(fashion) -> None:
    m = Monitor(fashion.profile)
    _feed(m, fashion, fashion.frames)  # 3,000 held-out frames, none of them the reference
    r = m.report()
    true = float(np.mean(fashion.probs.argmax(1) == fashion.labels))
    assert r.alarms == 0 and not r.alarm
    assert r.frames == 3000
    assert abs(r.estimated_accuracy - true) < 0.05
    assert r.interval[0] <= r.estimated_accuracy <= r.interval[1]
    assert r.drifted == [] and r.cause is None
    assert "ok" in r.summary()


def test_darker_frames_alarm_within_300_frames_and_name_darkness(fashion) -> None:
    m = Monitor(fashion.profile, labels=fashion.predictor.labels)
    _feed(m, fashion, fashion.frames[:600])
    assert not m.alarm
    dark = _darker(fashion.frames[600:1500])
    true = float(np.mean(fashion.run(dark).argmax(1) == fashion.labels[600:1500]))
    assert true < fashion.profile.reference_accuracy - 0.10  # a shift that matters
    for i in range(0, len(dark), 10):
        m.update(fashion.run(dark[i:i + 10]), dark[i:i + 10])
        if m.alarm:
            break
    r = m.report()
    assert r.alarm and r.first_alarm_frame - 600 <= 300
    assert "darker" in r.cause
    assert r.estimated_accuracy < fashion.profile.reference_accuracy - 0.05


def test_noise_is_named_noise(fashion) -> None:
    m = Monitor(fashion.profile)
    noisy = _noisy(fashion.frames[:900])
    _feed(m, fashion, noisy)
    r = m.report()
    assert r.alarm, r.summary()
    assert "noisier" in r.cause or "grainier" in r.cause


def test_a_label_shift_is_named_by_its_class(fashion) -> None:
    """Only shirts (the class the model gets wrong most): no frame signal moves."""
    shirts = [f for f, y in zip(fashion.frames, fashion.labels, strict=True) if y == 6]
    m = Monitor(fashion.profile, labels=fashion.predictor.labels)
    _feed(m, fashion, (shirts * 3)[:600])
    r = m.report()
    assert r.alarm
    assert "class mix changed" in r.cause and "Shirt" in r.cause
    assert "darker" not in r.cause


def test_profile_survives_json_and_damage_is_a_model_error(fashion) -> None:
    from edgeinfer.errors import ModelError

    d = json.loads(json.dumps(fashion.profile.to_dict()))
    assert ReferenceProfile.from_dict(d) == fashion.profile
    for key, bad in (("level", "0.9"), ("reference_accuracy", True), ("n", 0),
                     ("estimator", "magic"), ("signals", {"glow": {}}), ("version", 2),
                     ("calibration", {"temperature": float("nan")})):
        broken = dict(d, **{key: bad})
        with pytest.raises(ModelError, match="monitor profile is damaged"):
            ReferenceProfile.from_dict(broken)
    with pytest.raises(ModelError, match="missing"):
        ReferenceProfile.from_dict({k: v for k, v in d.items() if k != "level"})


def test_without_labels_no_accuracy_is_claimed(fashion) -> None:
    prof = build_profile(fashion.ref_probs, fashion.ref_frames, "BGR", None)
    m = Monitor(prof)
    _feed(m, fashion, fashion.frames[:300])
    r = m.report()
    assert r.estimated_accuracy is None and r.reference_accuracy is None
    assert "not estimated" in r.summary()
    json.dumps(r.to_dict())


def test_unknown_cause_when_nothing_measurable_moved(fashion) -> None:
    """Wrong predictions on frames that look like the reference: the monitor says it does
    not know why, instead of naming a culprit."""
    from edgeinfer.runtime.monitor.cause import explain

    effects = {s: 0.1 for s in ("brightness", "contrast", "noise")}
    line = explain(effects, 0.0, np.asarray(fashion.profile.class_freq), fashion.profile)
    assert line.startswith("cause unknown")


def test_cusum_false_alarm_rate_is_what_it_was_set_to() -> None:
    """Fresh healthy Bernoulli(0.9) streams (other seeds than the simulation's): with
    arl0 = 10 x SIM_FRAMES about 10% of 10,000-frame streams alarm, never most of them,
    and a 1e6 setting gives a higher threshold."""
    q = np.quantile(np.r_[np.zeros(100), np.ones(900)], np.linspace(0, 1, 101))
    h = simulated_threshold(q, 0.9, 0.05, 10 * SIM_FRAMES)
    assert simulated_threshold(q, 0.9, 0.05, 1e6) > h
    rng = np.random.default_rng(123)
    alarms = 0
    for _ in range(200):
        c = Cusum(q, 0.9, 0.10, 10 * SIM_FRAMES)
        assert c.h == h
        alarms += c.update((rng.random(SIM_FRAMES) < 0.9).astype(float))
    assert 5 <= alarms <= 40


def test_labels_of_other_classes_calibrate_nothing(fashion) -> None:
    """Labels past the model's class count are not this model's: no accuracy is claimed."""
    bad = fashion.ref_labels.copy()
    bad[0] = 12
    prof = build_profile(fashion.ref_probs, fashion.ref_frames, "BGR", bad)
    assert prof.reference_accuracy is None and prof.labelled == 0


def test_the_stored_alarm_threshold_is_the_one_a_monitor_would_simulate(fashion) -> None:
    """build_profile stores the default alarm's threshold so a Monitor starts without the
    simulation; it must be exactly what the Monitor computes without it, and other
    settings must not reuse it."""
    from dataclasses import replace

    prof = fashion.profile
    assert set(prof.alarm) == {"drop", "arl0", "margin_se", "h"}
    bare = replace(prof, alarm={})
    assert Monitor(prof)._cusum.h == Monitor(bare)._cusum.h == prof.alarm["h"]
    again = ReferenceProfile.from_dict(json.loads(json.dumps(prof.to_dict())))
    assert Monitor(again)._cusum.h == prof.alarm["h"]
    assert Monitor(prof, drop=0.2)._cusum.h == Monitor(bare, drop=0.2)._cusum.h != prof.alarm["h"]
