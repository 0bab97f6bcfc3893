"""Serve fixtures: the real fashion artifact (root conftest), real images, real servers.

Servers are real uvicorn servers on 127.0.0.1 with a free port, started in a background
thread by ``edgeinfer.serve.server.serve_in_thread`` (the same app and sockets as
``edgeinfer serve``); the SIGTERM test runs ``python -m edgeinfer serve`` as a process.
"""

from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from edgeinfer.data.datasets import load_fashion_mnist, sample_photos
from edgeinfer.runtime.predictor import Predictor
from edgeinfer.serve.config import ServeConfig
from edgeinfer.serve.server import serve_in_thread


def encode(img: np.ndarray, ext: str = ".jpg") -> bytes:
    ok, enc = cv2.imencode(ext, img)
    assert ok
    return enc.tobytes()


def assert_oip_detections(client, model: str, detector, images) -> int:
    """Each image sent as an encoded frame over the Open Inference Protocol (``client``: a
    tritonclient HTTP client) answers exactly the in-process ``detector``'s boxes, scores
    and classes; returns how many detections there were (a test of nothing found is none)."""
    import tritonclient.http as triton

    found = 0
    for img in images:
        jpg = encode(img)
        want = detector(jpg)
        found += len(want)
        inp = triton.InferInput("frame", [1], "BYTES")
        inp.set_data_from_numpy(np.array([jpg], dtype=np.object_))
        res = client.infer(model, [inp])
        np.testing.assert_array_equal(
            res.as_numpy("boxes"), np.array([d.box for d in want], np.float32).reshape(-1, 4))
        np.testing.assert_array_equal(res.as_numpy("scores"),
                                      np.array([d.score for d in want], np.float32))
        np.testing.assert_array_equal(res.as_numpy("classes"),
                                      np.array([d.index for d in want], np.int64))
    return found


@pytest.fixture(scope="session")
def fashion_frames() -> tuple[np.ndarray, np.ndarray]:
    """The first 32 Fashion-MNIST test images as 56x56 BGR frames, and their labels."""
    images, labels = load_fashion_mnist("test")
    frames = np.stack([cv2.cvtColor(cv2.resize(im, (56, 56)), cv2.COLOR_GRAY2BGR)
                       for im in images[:32]])
    frames.setflags(write=False)
    return frames, labels[:32]


@pytest.fixture(scope="session")
def jpegs(fashion_frames) -> list[bytes]:
    """Real images as JPEG: 6 Fashion-MNIST frames and one real photo (another size)."""
    frames, _ = fashion_frames
    return [encode(f) for f in frames[:6]] + [encode(sample_photos()["coffee"])]


@pytest.fixture(scope="session")
def predictor(fashion_artifact) -> Predictor:
    return Predictor(fashion_artifact)


@pytest.fixture(scope="module")
def server(fashion_artifact) -> Iterator[str]:
    """The default server on the fashion artifact."""
    with serve_in_thread([fashion_artifact], ServeConfig(port=0)) as url:
        yield url
