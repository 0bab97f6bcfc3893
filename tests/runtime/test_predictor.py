"""Predictor end to end on real artifacts: results, batches, TTA, threads, a lean import."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import threading

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from edgeinfer import Predictor
from edgeinfer.errors import (
    ConfigError,
    EdgeInferError,
    ImageDecodeError,
    ImageFormatError,
    ModelError,
)
from edgeinfer.runtime import Prediction, load_image
from edgeinfer.runtime.onnx_backend import OnnxBackend
from edgeinfer.runtime.tta import average_views, crop_side, get_policy


class CountingBackend:
    """A thin wrapper around a real backend that records the batch shape of every call."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.calls: list[tuple[int, ...]] = []
        self.provider = inner.provider
        self.input_shape = inner.input_shape
        self.output_shape = inner.output_shape

    def metadata_props(self) -> dict[str, str]:
        return self.inner.metadata_props()

    def run(self, frames: np.ndarray) -> np.ndarray:
        self.calls.append(frames.shape)
        return self.inner.run(frames)


@pytest.fixture(scope="module")
def predictor(fashion_artifact) -> Predictor:
    return Predictor(fashion_artifact)


def _counting(artifact, tta=None) -> tuple[Predictor, CountingBackend]:
    backend = CountingBackend(OnnxBackend(artifact))
    return Predictor.from_backend(backend, tta=tta), backend


def _probs_of(preds: list[Prediction], k: int) -> np.ndarray:
    """Back from a full top-k list to the probability vector (float32, by class index)."""
    out = np.full(k, np.nan, np.float32)
    for p in preds:
        out[p.index] = p.probability
    return out


# ------------------------------------------------------------------------- single image
def test_predict_returns_sorted_predictions(predictor, fashion_meta, photo) -> None:
    preds = predictor.predict(photo, top_k=3)
    assert len(preds) == 3 and all(isinstance(p, Prediction) for p in preds)
    probs = [p.probability for p in preds]
    assert probs == sorted(probs, reverse=True)
    for p in preds:
        assert isinstance(p.label, str) and isinstance(p.index, int)
        assert isinstance(p.probability, float)
        assert p.label == fashion_meta.labels[p.index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        preds[0].label = "x"  # type: ignore[misc]


def test_predict_probs_is_exactly_the_session_output(predictor, fashion_artifact, photos) -> None:
    sess = ort.InferenceSession(str(fashion_artifact), providers=["CPUExecutionProvider"])
    for frame in photos.values():
        raw = sess.run(["probs"], {"frame": frame[None]})[0][0]
        np.testing.assert_array_equal(predictor.predict_probs(frame), raw)
        full = predictor.predict(frame, top_k=100)  # above K: all classes
        assert len(full) == 10
        np.testing.assert_array_equal(_probs_of(full, 10), raw)
        assert abs(sum(p.probability for p in full) - 1.0) < 1e-5


def test_ties_are_ordered_by_index(predictor, monkeypatch) -> None:
    monkeypatch.setattr(predictor, "_probs", lambda _v: np.full((1, 10), 0.1, np.float32))
    assert [p.index for p in predictor.predict(np.zeros((4, 4, 3), np.uint8), top_k=10)] \
        == list(range(10))


def test_path_bytes_and_array_agree(predictor, tmp_path, photo) -> None:
    png = cv2.imencode(".png", photo)[1].tobytes()  # lossless: the same pixels
    (tmp_path / "p.png").write_bytes(png)
    ref = predictor.predict_probs(photo)
    for image in (png, tmp_path / "p.png", str(tmp_path / "p.png"), photo[:, :, :]):
        np.testing.assert_array_equal(predictor.predict_probs(image), ref)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", True, None])
def test_bad_top_k(predictor, photo, bad) -> None:
    with pytest.raises(ConfigError, match="top_k"):
        predictor.predict(photo, top_k=bad)
    with pytest.raises(ConfigError, match="top_k"):
        predictor.predict_batch([photo], top_k=bad)


def test_properties(predictor, fashion_meta) -> None:
    assert predictor.spec == fashion_meta.spec
    assert predictor.labels == fashion_meta.labels and len(predictor.labels) == 10
    assert predictor.metadata == fashion_meta
    assert predictor.provider == "CPUExecutionProvider"
    assert predictor.tta == "none"
    assert "fashion" in repr(predictor)


def test_bad_images_raise_typed_errors(predictor) -> None:
    with pytest.raises(ImageDecodeError):
        predictor.predict(b"not an image")
    with pytest.raises(ImageFormatError):
        predictor.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ImageDecodeError):
        predictor.predict("/no/such/file.jpg")


def test_gray_frame_artifact(fashion_gray_artifact, photo) -> None:
    p = Predictor(fashion_gray_artifact)
    assert p.spec.frame_color == "GRAY" and p.backend.input_shape[3] == 1
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    ref = p.predict_probs(gray)
    np.testing.assert_array_equal(p.predict_probs(gray[:, :, None]), ref)
    np.testing.assert_array_equal(p.predict_probs(photo), ref)  # BGR converted with luma
    png = cv2.imencode(".png", gray)[1].tobytes()
    np.testing.assert_array_equal(p.predict_probs(png), ref)
    assert len(p.predict_batch([gray, photo, png])) == 3


def test_output_shape_is_checked(fashion_artifact, photo) -> None:
    class Wrong(CountingBackend):
        def run(self, frames):
            return self.inner.run(frames)[:, :5]

    p = Predictor.from_backend(Wrong(OnnxBackend(fashion_artifact)))
    with pytest.raises(ModelError, match="shape"):
        p.predict(photo)
    assert isinstance(p.predict_batch([photo])[0], ModelError)


# ------------------------------------------------------------------------- batches
def test_batch_reports_bad_images_in_place(predictor, photos, tmp_path) -> None:
    good = list(photos.values())
    images = [good[0], b"junk", good[1], np.zeros((3, 3), np.float64), good[2],
              tmp_path / "missing.png", np.zeros((0, 4, 3), np.uint8), good[0]]
    out = predictor.predict_batch(images, top_k=2)
    assert len(out) == len(images)
    assert isinstance(out[1], ImageDecodeError) and isinstance(out[5], ImageDecodeError)
    assert isinstance(out[3], ImageFormatError) and isinstance(out[6], ImageFormatError)
    for i, j in ((0, 0), (2, 1), (4, 2), (7, 0)):
        assert out[i] == predictor.predict(good[j], top_k=2)


def test_single_and_batch_are_identical(predictor, photos) -> None:
    # Different sizes (grouped into separate calls) and repeats (same-size batches).
    frames = [cv2.resize(f, (64, 48)) for f in photos.values()] * 3 + list(photos.values())
    single = np.stack([predictor.predict_probs(f) for f in frames])
    for batch_size in (1, 2, 5, 32):
        out = predictor.predict_batch(frames, top_k=10, batch_size=batch_size)
        got = np.stack([_probs_of(o, 10) for o in out])
        assert np.array_equal(got, single), (batch_size, np.abs(got - single).max())


def test_batch_groups_equal_sizes_into_one_call(fashion_artifact, photos) -> None:
    p, backend = _counting(fashion_artifact)
    a, b = photos["astronaut"], photos["china"]  # 512x512 and 427x640
    out = p.predict_batch([a, b, a, a, b, a], top_k=1)
    assert sorted(backend.calls) == sorted([(4, *a.shape), (2, *b.shape)])
    assert all(isinstance(o, list) for o in out)
    backend.calls.clear()
    p.predict_batch([a] * 5, batch_size=2)
    assert [c[0] for c in backend.calls] == [2, 2, 1]


def test_batch_inputs(predictor, photos) -> None:
    frames = np.stack([cv2.resize(f, (40, 30)) for f in photos.values()])
    expected = [predictor.predict(f) for f in frames]
    assert predictor.predict_batch(frames) == expected  # an N x H x W x C array
    assert predictor.predict_batch(f for f in frames) == expected  # a generator
    assert predictor.predict_batch([]) == []
    for bad in (frames[0], "a.jpg", b"bytes"):
        with pytest.raises(ConfigError, match="predict_batch takes a list"):
            predictor.predict_batch(bad)
    with pytest.raises(ConfigError, match="batch_size"):
        predictor.predict_batch(frames, batch_size=0)


# ------------------------------------------------------------------------- TTA
def test_tta_views_run_as_one_batch(fashion_artifact, photo) -> None:
    for tta, views in (("none", 1), ("hflip", 2), ("hflip+crops", 10)):
        p, backend = _counting(fashion_artifact, tta)
        p.predict(photo)
        side = crop_side(photo.shape[0]) if tta == "hflip+crops" else photo.shape[0]
        assert backend.calls == [(views, side, side, 3)]
        backend.calls.clear()
        p.predict_batch([photo, photo, photo])
        assert backend.calls == [(3 * views, side, side, 3)]


def test_hflip_of_a_symmetric_image_equals_none(fashion_artifact, photo) -> None:
    sym = np.ascontiguousarray(np.concatenate([photo, photo[:, ::-1]], axis=1))
    none = Predictor(fashion_artifact).predict_probs(sym)
    np.testing.assert_array_equal(Predictor(fashion_artifact, tta="hflip").predict_probs(sym), none)


def test_hflip_is_the_mean_of_frame_and_mirror(fashion_artifact, photo) -> None:
    plain = Predictor(fashion_artifact)
    a = plain.predict_probs(photo)
    b = plain.predict_probs(np.ascontiguousarray(photo[:, ::-1]))
    got = Predictor(fashion_artifact, tta="hflip").predict_probs(photo)
    np.testing.assert_array_equal(got, (a + b) / np.float32(2))


def test_ten_crop_views(photos) -> None:
    frame = photos["china"]  # 427 x 640
    views = get_policy("hflip+crops").views(frame)
    ch, cw = crop_side(427), crop_side(640)
    assert (ch, cw) == (374, 560) and views.shape == (10, ch, cw, 3)
    h, w = frame.shape[:2]
    origins = [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw),
               ((h - ch) // 2, (w - cw) // 2)]
    for i, (t, left) in enumerate(origins):
        crop = frame[t:t + ch, left:left + cw]
        np.testing.assert_array_equal(views[2 * i], crop)
        np.testing.assert_array_equal(views[2 * i + 1], crop[:, ::-1])
    tiny = get_policy("hflip+crops").views(np.zeros((1, 1, 3), np.uint8))
    assert tiny.shape == (10, 1, 1, 3)


def test_tta_batch_and_single_identical(fashion_artifact, photos) -> None:
    p = Predictor(fashion_artifact, tta="hflip+crops")
    frames = [cv2.resize(f, (50, 40)) for f in photos.values()] + [photos["coffee"]]
    single = np.stack([p.predict_probs(f) for f in frames])
    got = np.stack([_probs_of(o, 10) for o in p.predict_batch(frames, top_k=10)])
    assert np.array_equal(got, single)


def test_average_views() -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((6, 4), dtype=np.float32)
    np.testing.assert_allclose(average_views(probs, 3), probs.reshape(2, 3, 4).mean(1),
                               rtol=1e-6)
    assert average_views(probs, 1) is probs


@pytest.mark.parametrize("bad", ["vflip", "HFLIP", "", 3])
def test_unknown_tta_policy(fashion_artifact, bad) -> None:
    with pytest.raises(ConfigError, match="unknown TTA policy"):
        Predictor(fashion_artifact, tta=bad)


# ------------------------------------------------------------------------- threads
def test_thread_safety(fashion_artifact, photos) -> None:
    p = Predictor(fashion_artifact, tta="hflip")
    frames = [cv2.resize(f, (96 + 8 * i, 80)) for i, f in enumerate(photos.values())]
    frames += list(photos.values())
    expected = [p.predict_probs(f) for f in frames]
    expected_top = [p.predict(f, top_k=3) for f in frames]
    rounds = 6
    failures: list[str] = []
    barrier = threading.Barrier(8)

    def worker(t: int) -> None:
        barrier.wait()
        for r in range(rounds):
            for i in range(len(frames)):
                j = (i + t + r) % len(frames)  # threads hit different frames at once
                if not np.array_equal(p.predict_probs(frames[j]), expected[j]):
                    failures.append(f"thread {t} round {r} frame {j}")
            if p.predict_batch(frames[:4], top_k=3) != expected_top[:4]:
                failures.append(f"thread {t} batch {r}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:5]


# ------------------------------------------------------------------------- lean import
def test_fresh_interpreter_imports_no_frameworks(fashion_artifact, tmp_path, jpeg_bytes) -> None:
    photo_path = tmp_path / "photo.jpg"
    photo_path.write_bytes(jpeg_bytes)
    code = textwrap.dedent(f"""
        import sys
        import edgeinfer
        from edgeinfer import Predictor
        preds = Predictor({str(fashion_artifact)!r}).predict({str(photo_path)!r})
        assert len(preds) == 5, preds
        import numpy as np
        Predictor({str(fashion_artifact)!r}, tta="hflip+crops").predict_batch(
            [np.zeros((30, 40, 3), np.uint8), b"junk"])
        banned = ("torch", "tensorflow", "onnx", "litert_torch", "edgeinfer.converter")
        bad = sorted(m for m in sys.modules
                     if any(m == b or m.startswith(b + ".") for b in banned))
        print("BANNED:", bad)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "BANNED: []" in r.stdout, r.stdout


def test_load_image_is_exported() -> None:
    import edgeinfer.runtime as rt

    assert set(rt.__all__) == {"Predictor", "Prediction", "Stream", "StreamResult",
                               "StreamStats", "load_image", "open_backend"}
    assert rt.load_image is load_image
    assert issubclass(ConfigError, EdgeInferError) and issubclass(ConfigError, ValueError)


# ------------------------------------------------------------------------- a real ImageNet model
@pytest.mark.slow
def test_efficientnet_batch_identity_and_a_cat(effnet_artifact, photos) -> None:
    p = Predictor(effnet_artifact, tta="hflip")
    frames = list(photos.values()) + [cv2.resize(photos["chelsea"], (300, 200))] * 2
    single = np.stack([p.predict_probs(f) for f in frames])
    k = len(p.labels)
    got = np.stack([_probs_of(o, k) for o in p.predict_batch(frames, top_k=k)])
    assert np.array_equal(got, single)
    top = p.predict(photos["chelsea"], top_k=1)[0]
    assert "cat" in top.label.lower(), top


def test_fashion_accuracy_through_the_predictor(fashion_artifact) -> None:
    """Real test images as gray 28x28 arrays (replicated to BGR by load_image), batched."""
    from edgeinfer.data.datasets import load_fashion_mnist

    from .conftest import FASHION_WEIGHTS

    images, labels = load_fashion_mnist("test")
    images, labels = images[:1000], labels[:1000]
    p = Predictor(fashion_artifact)
    out = p.predict_batch(list(images), top_k=1)
    top1 = np.array([o[0].index for o in out])
    sess = ort.InferenceSession(str(fashion_artifact), providers=["CPUExecutionProvider"])
    raw = sess.run(["probs"], {"frame": np.repeat(images[..., None], 3, axis=-1)})[0]
    assert np.array_equal(top1, raw.argmax(1))
    if FASHION_WEIGHTS.exists():  # trained weights (not the untrained stand-in)
        assert (top1 == labels).mean() >= 0.9
        hflip = Predictor(fashion_artifact, tta="hflip").predict_batch(list(images), top_k=1)
        assert (np.array([o[0].index for o in hflip]) == labels).mean() >= 0.9
