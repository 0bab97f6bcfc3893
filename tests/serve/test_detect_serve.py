"""A detector served next to a classifier, on a real server on 127.0.0.1, with a real client
(tritonclient.http, httpx): the Open Inference Protocol's boxes, scores, classes and
keypoints for real photos with faces equal the in-process Detector's, cast to float32,
exactly; /predict answers JSON boxes; every refusal is a JSON 4xx."""

from __future__ import annotations

import json

import cv2
import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from edgeinfer.data.datasets import sample_photos
from edgeinfer.runtime.detect.detector import Detector
from edgeinfer.serve.config import ServeConfig
from edgeinfer.serve.server import serve_in_thread
from tests.serve.conftest import encode

NAME = "blazeface_short_range"


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.blazeface("short_range", threads=1)


@pytest.fixture(scope="module")
def server(fashion_artifact):  # noqa: ANN001, ANN201
    """``edgeinfer serve blazeface:short_range fashion.onnx``: a detector and a classifier."""
    with serve_in_thread(["blazeface:short_range", fashion_artifact],
                         ServeConfig(port=0, threads=1)) as url:
        yield url


@pytest.fixture(scope="module")
def photos() -> dict[str, bytes]:
    """PNG and JPEG (the server and the Detector decode the same bytes): the astronaut
    (one face), a portrait crop of it, two close-up faces side by side 280x560 (the short
    range model finds close faces: the 512x1024 pair is too far for it), and coffee (no
    face)."""
    p = sample_photos()
    a = p["astronaut"]
    face = a[20:300, 80:360]
    return {"astronaut": encode(a, ".png"), "portrait": encode(a[:, 90:390], ".jpg"),
            "two faces": encode(np.concatenate([face, face[:, ::-1]], axis=1), ".png"),
            "coffee": encode(p["coffee"], ".jpg")}


def _client(url: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url.removeprefix("http://"))


def _expected(detector: Detector, image: bytes | np.ndarray) -> dict[str, np.ndarray]:
    dets = detector(image)
    n = len(dets)
    return {"boxes": np.array([d.box for d in dets], np.float32).reshape(n, 4),
            "scores": np.array([d.score for d in dets], np.float32).reshape(n),
            "classes": np.array([d.index for d in dets], np.int64).reshape(n),
            "keypoints": np.array([d.keypoints for d in dets], np.float32).reshape(n, 6, 2)}


def _bytes_input(data: bytes) -> triton.InferInput:
    inp = triton.InferInput("frame", [1], "BYTES")
    inp.set_data_from_numpy(np.array([data], dtype=np.object_))
    return inp


def test_metadata_lists_the_detection_outputs(server) -> None:  # noqa: ANN001
    c = _client(server)
    assert c.is_model_ready(NAME) and c.is_model_ready("fashion")
    meta = c.get_model_metadata(NAME)
    assert meta["inputs"] == [{"name": "frame", "datatype": "UINT8", "shape": [1, -1, -1, 3]}]
    assert meta["outputs"] == [
        {"name": "boxes", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "scores", "datatype": "FP32", "shape": [-1]},
        {"name": "classes", "datatype": "INT64", "shape": [-1]},
        {"name": "keypoints", "datatype": "FP32", "shape": [-1, 6, 2]}]
    config = c.get_model_config(NAME)
    assert config["labels"] == ["face"]
    assert config["parameters"]["edgeinfer.frame_color"]["string_value"] == "RGB"
    assert json.loads(config["parameters"]["edgeinfer.detection"]["string_value"])["fit"] \
        == "pad_resize"
    # the classifier next to it is unchanged
    assert c.get_model_metadata("fashion")["outputs"] == [
        {"name": "probs", "datatype": "FP32", "shape": [-1, 10]}]


@pytest.mark.parametrize("name", ["astronaut", "portrait", "two faces", "coffee"])
def test_tritonclient_round_trip_equals_the_detector(server, detector, photos,  # noqa: ANN001
                                                     name: str) -> None:
    want = _expected(detector, photos[name])
    assert len(want["scores"]) == {"astronaut": 1, "portrait": 1, "two faces": 2,
                                   "coffee": 0}[name]
    c = _client(server)
    for binary in (True, False):  # binary tensor data and JSON
        outs = [triton.InferRequestedOutput(n, binary_data=binary) for n in want]
        res = c.infer(NAME, [_bytes_input(photos[name])], outputs=outs)
        for n, w in want.items():
            got = res.as_numpy(n)
            assert got.dtype == w.dtype and got.shape == w.shape, n
            np.testing.assert_array_equal(got, w)
    # no outputs named: all four, binary
    res = c.infer(NAME, [_bytes_input(photos[name])])
    np.testing.assert_array_equal(res.as_numpy("boxes"), want["boxes"])


def test_uint8_frame_in_the_detectors_colour(server, detector) -> None:  # noqa: ANN001
    """A raw frame travels as UINT8 [1, H, W, 3] in the config's frame colour (RGB)."""
    rgb = np.ascontiguousarray(cv2.cvtColor(sample_photos()["astronaut"],
                                            cv2.COLOR_BGR2RGB)[40:321])  # landscape 281x512
    want = _expected(detector, rgb)
    inp = triton.InferInput("frame", [1, *rgb.shape], "UINT8")
    inp.set_data_from_numpy(rgb[None])
    res = _client(server).infer(NAME, [inp])
    np.testing.assert_array_equal(res.as_numpy("boxes"), want["boxes"])
    np.testing.assert_array_equal(res.as_numpy("scores"), want["scores"])
    assert len(want["boxes"]) == 1


def test_predict_returns_json_boxes(server, detector, photos) -> None:  # noqa: ANN001
    r = httpx.post(f"{server}/predict?model={NAME}", content=photos["two faces"],
                   headers={"content-type": "image/png"})
    assert r.status_code == 200
    assert r.json() == {"model": NAME, "detections": [
        json.loads(json.dumps(d.to_dict())) for d in detector(photos["two faces"])]}
    assert len(r.json()["detections"]) == 2


def _post(url: str, doc: dict, tail: bytes = b"") -> httpx.Response:
    head = json.dumps(doc).encode()
    headers = {"inference-header-content-length": str(len(head))} if tail else {}
    return httpx.post(f"{url}/v2/models/{NAME}/infer", content=head + tail, headers=headers)


def test_bad_requests_are_4xx(server, photos) -> None:  # noqa: ANN001
    c = _client(server)
    two = triton.InferInput("frame", [2], "BYTES")
    two.set_data_from_numpy(np.array([photos["astronaut"]] * 2, dtype=np.object_))
    with pytest.raises(InferenceServerException, match="above the limit of 1"):
        c.infer(NAME, [two])
    with pytest.raises(InferenceServerException, match="classification extension"):
        c.infer(NAME, [_bytes_input(photos["astronaut"])],
                outputs=[triton.InferRequestedOutput("boxes", class_count=3)])
    with pytest.raises(InferenceServerException, match="boxes, scores, classes, keypoints"):
        c.infer(NAME, [_bytes_input(photos["astronaut"])],
                outputs=[triton.InferRequestedOutput("probs")])
    with pytest.raises(InferenceServerException, match="(?i)image"):
        c.infer(NAME, [_bytes_input(b"not an image at all")])
    cases = [
        ({"inputs": [{"name": "frame", "datatype": "UINT8", "shape": [1, 2, 2],
                      "data": [0, 1, 2, 3]}]}, 400, "UINT8"),
        ({"inputs": [{"name": "frame", "datatype": "FP32", "shape": [1], "data": [1.0]}]},
         400, "datatype"),
        ({"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [1],
                      "data": ["%%%"]}]}, 400, "base64"),
    ]
    for doc, status, match in cases:
        r = _post(server, doc)
        assert r.status_code == status and match in r.json()["error"], (doc, r.text)
    r = httpx.post(f"{server}/predict?model={NAME}", content=b"")
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = httpx.post(f"{server}/predict?model={NAME}", content=b"\x89PNG\r\n\x1a\nbroken")
    assert 400 <= r.status_code < 500


def test_micro_batching_server_answers_each_request_its_own_boxes(detector, photos) -> None:  # noqa: ANN001
    """With --max-batch the scheduler may run concurrent requests' frames in one call: each
    request still gets its own image's detections (0, 1 and 2 faces at once)."""
    from concurrent.futures import ThreadPoolExecutor

    names = ["coffee", "astronaut", "two faces", "portrait"] * 2
    with serve_in_thread(["blazeface:short_range"],
                         ServeConfig(port=0, threads=1, max_batch=4, batch_window_ms=20)) as url:
        def one(name: str) -> np.ndarray:
            c = _client(url)
            return c.infer(NAME, [_bytes_input(photos[name])]).as_numpy("boxes")

        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(one, names))
    for name, boxes in zip(names, got, strict=True):
        np.testing.assert_array_equal(boxes, _expected(detector, photos[name])["boxes"])
