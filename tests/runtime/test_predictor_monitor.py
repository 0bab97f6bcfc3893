"""Predictor(monitor=...) on the real fashion artifact and real Fashion-MNIST frames: the
monitor comes from the artifact's own profile, and predict / predict_probs / predict_batch
feed it the probabilities and the decoded frames (so darkness shows up as darkness)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgeinfer import Predictor
from edgeinfer.data.datasets import load_fashion_mnist
from edgeinfer.data.frames import to_frame_color
from edgeinfer.errors import ConfigError
from edgeinfer.runtime.monitor import Monitor, ReferenceProfile


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """600 real test frames (BGR, the fashion spec's frame) away from the parity frames."""
    im, _ = load_fashion_mnist("test")
    return [to_frame_color(f, "BGR") for f in im[6000:6600]]


@pytest.fixture(scope="module")
def unprofiled(fashion_artifact, tmp_path_factory):
    """The same artifact without its monitor profile (as one converted before issue 27)."""
    import onnx

    m = onnx.load(str(fashion_artifact))
    kept = [p for p in m.metadata_props if p.key != "edgeinfer.monitor"]
    assert len(kept) == len(m.metadata_props) - 1  # the conversion did store a profile
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    out = tmp_path_factory.mktemp("unprofiled") / "old.onnx"
    onnx.save(m, str(out))
    return out


def _fresh(p: Predictor, **kw) -> Monitor:
    return Monitor(ReferenceProfile.from_dict(p.metadata.monitor), labels=p.labels, **kw)


def test_monitor_true_is_built_from_the_artifacts_profile(fashion_artifact) -> None:
    p = Predictor(fashion_artifact, monitor=True)
    assert isinstance(p.monitor, Monitor)
    assert p.monitor.profile.to_dict() == \
        ReferenceProfile.from_dict(p.metadata.monitor).to_dict()
    assert p.monitor.labels == tuple(p.labels)
    assert p.monitor.frames == 0 and not p.monitor.alarm
    assert Predictor(fashion_artifact).monitor is None
    assert Predictor(fashion_artifact, monitor=False).monitor is None


def test_a_monitor_passed_in_is_the_one_fed(fashion_artifact, frames) -> None:
    base = Predictor(fashion_artifact)
    m = _fresh(base)
    p = Predictor(fashion_artifact, monitor=m)
    assert p.monitor is m
    p.predict(frames[0])
    assert m.frames == 1


@pytest.mark.parametrize("bad", ["yes", 1, 0.5, {"n": 3}])
def test_monitor_takes_true_false_or_a_monitor(fashion_artifact, bad) -> None:
    with pytest.raises(ConfigError, match="monitor="):
        Predictor(fashion_artifact, monitor=bad)


def test_no_profile_says_how_to_get_one(unprofiled, frames) -> None:
    p = Predictor(unprofiled)
    assert p.metadata.monitor == {}
    p.predict(frames[0])  # the artifact itself still serves
    with pytest.raises(ConfigError, match="no monitor profile") as e:
        Predictor(unprofiled, monitor=True)
    msg = str(e.value)
    assert "convert it again" in msg and "--reference" in msg and "\n" not in msg


def test_every_entry_point_feeds_the_monitor_the_same_probabilities(fashion_artifact,
                                                                    frames) -> None:
    p = Predictor(fashion_artifact, monitor=True)
    for f in frames[:20]:
        p.predict(f, top_k=3)
    for f in frames[20:40]:
        p.predict_probs(f)
    out = p.predict_batch(frames[40:100], batch_size=16)
    assert all(isinstance(r, list) for r in out)
    assert p.monitor.frames == 100
    ref = _fresh(p)  # the same frames' probabilities, fed by hand
    ref.update(p.backend.run(np.stack(frames[:100])), frames[:100])
    got, want = p.monitor.report(), ref.report()
    assert got.frames == want.frames == 100
    assert got.estimated_accuracy == pytest.approx(want.estimated_accuracy, abs=1e-6)
    assert got.drift["confidence"] == pytest.approx(want.drift["confidence"], abs=1e-5)
    assert got.drift["class_mix"] == pytest.approx(want.drift["class_mix"], abs=1e-9)


def test_darker_frames_through_predict_batch_alarm_and_are_named(fashion_artifact,
                                                                 frames) -> None:
    """The frames reach the monitor, not only the probabilities: the cause is darkness."""
    p = Predictor(fashion_artifact, monitor=True)
    p.predict_batch(frames[:300])
    healthy = p.monitor.report()
    assert not healthy.alarm and abs(healthy.drift["brightness"]) < 1
    p.predict_batch([(f * 0.25).astype(np.uint8) for f in frames[300:]])
    r = p.monitor.report()
    assert r.frames == 600 and r.alarm
    assert r.drift["brightness"] < -1 < healthy.drift["brightness"]
    assert r.estimated_accuracy < healthy.estimated_accuracy - 0.1
    # x0.25 makes frames both darker and flatter: the cause names a frame signal, which only
    # the decoded frames (not the probabilities) can give it
    assert "sigma" in r.cause and ("darker" in r.cause or "contrast" in r.cause)


def test_sampling_feeds_one_call_in_n(fashion_artifact, frames) -> None:
    base = Predictor(fashion_artifact)
    p = Predictor(fashion_artifact, monitor=_fresh(base, sample_every=4))
    for f in frames[:40]:
        p.predict_probs(f)
    p.predict_batch(frames[40:80])
    assert p.monitor.frames == 20


def test_threads_share_one_monitor_without_losing_frames(fashion_artifact, frames) -> None:
    """Predictor is safe to share between threads (one session); so is its monitor."""
    p = Predictor(fashion_artifact, monitor=True)
    chunks = [frames[i:i + 60] for i in range(0, 240, 60)]
    errors: list[BaseException] = []

    def work(chunk: list[np.ndarray]) -> None:
        try:
            for f in chunk:
                p.predict(f)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert p.monitor.frames == 240
    ref = _fresh(p)
    ref.update(p.backend.run(np.stack(frames[:240])))
    # the window (300) holds every frame, so the estimate does not depend on their order
    assert p.monitor.report().estimated_accuracy == pytest.approx(
        ref.report().estimated_accuracy, abs=1e-6)
