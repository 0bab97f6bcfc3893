"""Property: whatever is thrown at predict, only EdgeInferError subclasses come out.

Random bytes (bare, behind each supported format's magic, and mutations of real JPEG and
PNG files: byte flips, cuts, splices) and random arrays (any dtype, any shape including
empty ones) must give either valid predictions or a typed edgeinfer error, never a
cv2.error, an onnxruntime exception, a numpy error or a crash.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from edgeinfer import Predictor
from edgeinfer.errors import EdgeInferError
from edgeinfer.runtime import Prediction

MAGICS = [b"\xff\xd8", b"\xff\xd8\xff\xe0", b"\x89PNG\r\n\x1a\n", b"BM", b"GIF89a",
          b"RIFF\x20\x00\x00\x00WEBPVP8 ", b"RIFF\x20\x00\x00\x00WEBPVP8L",
          b"RIFF\x20\x00\x00\x00WEBPVP8X", b"II*\x00", b"MM\x00*", b"P5 ", b"P6\n", b"P7\n"]

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(scope="module")
def predictor(fashion_artifact) -> Predictor:
    # max_pixels kept small so fuzzed headers that claim big images are refused fast.
    return Predictor(fashion_artifact, max_pixels=4_000_000)


@pytest.fixture(scope="module")
def seeds(photos) -> list[bytes]:
    small = cv2.resize(photos["coffee"], (48, 32))
    return [cv2.imencode(ext, small)[1].tobytes() for ext in (".jpg", ".png", ".bmp", ".webp")]


def _check(predictor: Predictor, image) -> None:
    try:
        out = predictor.predict(image, top_k=3)
    except EdgeInferError as e:
        assert "\n" not in str(e)
        return
    assert len(out) == 3 and all(isinstance(p, Prediction) for p in out)
    assert all(0.0 <= p.probability <= 1.0 for p in out)


@SETTINGS
@given(data=st.one_of(
    st.binary(max_size=600),
    st.tuples(st.sampled_from(MAGICS), st.binary(max_size=600)).map(lambda t: t[0] + t[1]),
))
def test_random_bytes(predictor, data) -> None:
    _check(predictor, data)


@SETTINGS
@given(which=st.integers(0, 3), flips=st.lists(st.tuples(st.integers(0, 10**6),
                                                            st.integers(0, 255)), max_size=8),
       cut=st.one_of(st.none(), st.integers(0, 10**6)), splice=st.binary(max_size=64))
def test_mutated_real_files(predictor, seeds, which, flips, cut, splice) -> None:
    b = bytearray(seeds[which])
    for pos, val in flips:
        b[pos % len(b)] = val
    if cut is not None:
        pos = cut % len(b)
        b = b[:pos] + splice + b[pos + len(splice):] if splice else b[:pos]
    _check(predictor, bytes(b))


DTYPES = st.sampled_from([np.uint8, np.int8, np.uint16, np.int32, np.int64, np.float16,
                          np.float32, np.float64, np.bool_, np.complex64])


@SETTINGS
@given(arr=hnp.arrays(DTYPES, hnp.array_shapes(min_dims=0, max_dims=5, min_side=0,
                                                max_side=12)))
def test_random_arrays(predictor, arr) -> None:
    _check(predictor, arr)


@SETTINGS
@given(shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=6),
       fill=st.sampled_from([None, "x", 1.5, b"\x00"]))
def test_object_and_odd_arrays(predictor, shape, fill) -> None:
    a = np.empty(shape, dtype=object)
    a.fill(fill)
    _check(predictor, a)
    _check(predictor, np.zeros(shape, dtype="U3"))
    _check(predictor, np.zeros(shape, dtype=[("r", "u1"), ("g", "u1")]))


@SETTINGS
@given(h=st.integers(1, 70), w=st.integers(1, 70), c=st.sampled_from([None, 1, 3, 4]),
       order=st.sampled_from(["C", "F", "flip", "stride"]), seed=st.integers(0, 2**16))
def test_random_valid_uint8_arrays_always_predict(predictor, h, w, c, order, seed) -> None:
    shape = (h, w) if c is None else (h, w, c)
    a = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    if order == "F":
        a = np.asfortranarray(a)
    elif order == "flip":
        a = a[::-1, ::-1]
    elif order == "stride":
        a = np.repeat(a, 2, axis=1)[:, ::2]
    out = predictor.predict(a, top_k=10)
    assert len(out) == 10
    assert abs(sum(p.probability for p in out) - 1.0) < 1e-4


@SETTINGS
@given(other=st.one_of(st.none(), st.integers(), st.floats(), st.lists(st.integers()),
                       st.dictionaries(st.text(), st.integers()), st.text(max_size=40)))
def test_other_objects(predictor, other) -> None:
    _check(predictor, other)
