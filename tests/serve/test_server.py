"""A real server on 127.0.0.1, real clients (tritonclient.http, httpx): results equal the
in-process Predictor's, bit for bit; every refusal is a JSON 4xx naming the problem."""

from __future__ import annotations

import re
import threading

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from edgeinfer.serve.config import ServeConfig
from edgeinfer.serve.server import serve_in_thread
from tests.serve.conftest import encode
from tests.serve.waits import (
    WITHIN_S,
    infer_body_cut_by_the_server,
    metric,
    until,
    until_metric,
)


def _client(url: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url.removeprefix("http://"))


def _bytes_input(images: list[bytes], binary: bool = True) -> triton.InferInput:
    inp = triton.InferInput("frame", [len(images)], "BYTES")
    inp.set_data_from_numpy(np.array(images, dtype=np.object_), binary_data=binary)
    return inp


def test_metadata_and_health(server) -> None:
    c = _client(server)
    assert c.is_server_live() and c.is_server_ready() and c.is_model_ready("fashion")
    assert {"classification", "binary_tensor_data"} <= set(c.get_server_metadata()["extensions"])
    meta = c.get_model_metadata("fashion")
    assert meta["inputs"] == [{"name": "frame", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}]
    assert meta["outputs"] == [{"name": "probs", "datatype": "FP32", "shape": [-1, 10]}]
    assert c.get_model_metadata("fashion", model_version="1")["name"] == "fashion"
    config = c.get_model_config("fashion")
    assert config["parameters"]["edgeinfer.frame_color"]["string_value"] == "BGR"
    assert len(config["labels"]) == 10
    for call in (lambda: c.get_model_metadata("nope"),
                 lambda: c.get_model_metadata("fashion", model_version="2")):
        with pytest.raises(InferenceServerException, match="nope|version"):
            call()
    assert not c.is_model_ready("nope")


def test_infer_encoded_images_equals_predictor(server, jpegs, predictor) -> None:
    """JPEG bytes of two sizes (Fashion frames and a real photo) in one BYTES batch."""
    expected = np.stack([predictor.predict_probs(j) for j in jpegs])
    c = _client(server)
    for binary in (True, False):  # binary tensor data (the client's default) and JSON
        out = triton.InferRequestedOutput("probs", binary_data=binary)
        res = c.infer("fashion", [_bytes_input(jpegs, binary=True)], outputs=[out])
        np.testing.assert_array_equal(res.as_numpy("probs"), expected)
    # no outputs named: the client asks for all outputs in binary
    np.testing.assert_array_equal(c.infer("fashion", [_bytes_input(jpegs)]).as_numpy("probs"),
                                  expected)


def test_infer_uint8_tensor_equals_predictor(server, fashion_frames, predictor) -> None:
    frames = np.ascontiguousarray(fashion_frames[0][:5])
    expected = np.stack([predictor.predict_probs(f) for f in frames])
    c = _client(server)
    for binary in (True, False):
        inp = triton.InferInput("frame", list(frames.shape), "UINT8")
        inp.set_data_from_numpy(frames, binary_data=binary)
        res = c.infer("fashion", [inp], outputs=[triton.InferRequestedOutput("probs", binary)])
        np.testing.assert_array_equal(res.as_numpy("probs"), expected)


def test_classification_extension(server, jpegs, predictor) -> None:
    c = _client(server)
    for binary in (True, False):
        out = triton.InferRequestedOutput("probs", binary_data=binary, class_count=3)
        got = c.infer("fashion", [_bytes_input(jpegs)], outputs=[out]).as_numpy("probs")
        assert got.shape == (len(jpegs), 3)
        for row, jpeg in zip(got, jpegs, strict=True):
            want = [f"{p.probability:f}:{p.index}:{p.label}"
                    for p in predictor.predict(jpeg, top_k=3)]
            strings = [s.decode() if isinstance(s, bytes) else s for s in row]
            assert strings == want
            assert all(re.fullmatch(r"\d\.\d{6}:\d+:.+", s) for s in strings)


def test_plain_predict_raw_and_multipart(server, jpegs, predictor) -> None:
    want = [{"label": p.label, "index": p.index, "probability": p.probability}
            for p in predictor.predict(jpegs[0], top_k=3)]
    raw = httpx.post(f"{server}/predict?top_k=3", content=jpegs[0],
                     headers={"content-type": "image/jpeg"})
    form = httpx.post(f"{server}/predict?top_k=3&model=fashion",
                      files={"image": ("shoe.jpg", jpegs[0], "image/jpeg")})
    curl_default = httpx.post(f"{server}/predict?top_k=3", content=jpegs[0], headers={
        "content-type": "application/x-www-form-urlencoded"})  # curl --data-binary @x.jpg
    for r in (raw, form, curl_default):
        assert r.status_code == 200, r.text
        assert r.json() == {"model": "fashion", "predictions": want}


def test_metrics_count_requests_errors_batches(server, jpegs) -> None:
    httpx.post(f"{server}/v2/models/fashion/infer", content=b"{")
    httpx.post(f"{server}/predict", content=jpegs[1])
    text = httpx.get(f"{server}/metrics").text
    assert 'edgeinfer_requests_total{model="fashion",route="infer",status="400"}' in text
    assert 'edgeinfer_errors_total{type="RequestError"}' in text
    assert "edgeinfer_request_seconds_bucket" in text and "edgeinfer_in_flight 0.0" in text
    assert re.search(r'edgeinfer_batch_frames_count\{model="fashion"\} [1-9]', text)


def _post(url: str, **kw) -> httpx.Response:
    return httpx.post(url, timeout=10, **kw)


@pytest.mark.parametrize("path, kw, status, match", [
    ("/v2/models/nope/infer", {"content": b"{}"}, 404, "unknown model 'nope'"),
    ("/v2/models/fashion/infer", {"content": b"[1"}, 400, "not valid JSON"),
    ("/v2/models/fashion/infer", {"content": b"{}", "headers": {"content-encoding": "gzip"}},
     415, "Content-Encoding"),
    ("/v2/models/fashion/infer", {"content": b"{}", "headers": {"content-type": "text/plain"}},
     415, "Content-Type"),
    ("/v2/models/fashion/infer", {"json": {"inputs": [
        {"name": "frame", "datatype": "BYTES", "shape": [1], "data": ["bm90IGFuIGltYWdl"]}]}},
     400, "not a JPEG"),
    ("/v2/models/fashion/infer", {"json": {"inputs": [
        {"name": "frame", "datatype": "UINT8", "shape": [1, 2, 2, 2], "data": [0] * 8}]}},
     400, "channels"),
    ("/predict", {"content": b"\xff\xd8\xff\xe0truncated"}, 400, "truncated"),
    ("/predict?top_k=0", {"content": b"x"}, 400, "top_k"),
    ("/predict", {"json": {"image": "x"}}, 415, "Content-Type"),
    ("/nowhere", {"content": b""}, 404, "no route"),
])
def test_refusals_are_json_4xx(server, path, kw, status, match) -> None:
    r = _post(server + path, **kw)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert re.search(match, r.json()["error"])
    assert httpx.get(f"{server}/v2/models/fashion/infer").status_code == 405


def test_limits(fashion_artifact, jpegs) -> None:
    """Body size (declared and streamed), pixels from the header, a slow body, a full queue.

    The slow body is held until the server has answered (its metrics say so), the full queue
    until the refused request is back: no sleep decides the outcome."""
    import asyncio

    cfg = ServeConfig(port=0, max_body_bytes=64 * 1024, max_pixels=1_000_000, max_queue=1,
                      timeout_s=1.0)
    with serve_in_thread([fashion_artifact], cfg) as url:
        big = b"\0" * (65 * 1024)
        assert _post(f"{url}/predict", content=big).status_code == 413
        chunked = _post(f"{url}/predict", content=iter([big[:40000], big[40000:]]))
        assert chunked.status_code == 413 and "limit" in chunked.json()["error"]
        png = bytearray(encode(np.zeros((8, 8, 3), np.uint8), ".png"))
        png[16:24] = (20000).to_bytes(4, "big") * 2  # IHDR claims 20000 x 20000
        bomb = _post(f"{url}/predict", content=bytes(png))
        assert bomb.status_code == 413 and bomb.json()["type"] == "ImageTooLargeError"

        slow_r = infer_body_cut_by_the_server(url)  # the rest only after the 408
        assert slow_r.status_code == 408 and "did not arrive" in slow_r.json()["error"]
        assert _post(f"{url}/predict", content=jpegs[0]).status_code == 200

    # a full queue: the slow request holds the only slot for as long as the test needs
    with serve_in_thread([fashion_artifact], ServeConfig(port=0, max_queue=1,
                                                         timeout_s=WITHIN_S)) as url:

        async def held_and_second() -> tuple[httpx.Response, httpx.Response]:
            release = asyncio.Event()

            async def body():
                yield b'{"inputs": '
                await release.wait()
                yield b"[]}"

            async with httpx.AsyncClient(timeout=WITHIN_S) as c:
                held = asyncio.create_task(c.post(f"{url}/v2/models/fashion/infer",
                                                  content=body()))
                await until_metric(c, url, "edgeinfer_in_flight")  # admitted, body pending
                second = await c.post(f"{url}/predict", content=jpegs[0])
                release.set()
                return await held, second

        held, second = asyncio.run(held_and_second())
        assert second.status_code == 503 and second.headers["retry-after"] == "1"
        assert held.status_code == 400, held.text  # it got its slot: a complete, empty request
        assert _post(f"{url}/predict", content=jpegs[0]).status_code == 200


def test_micro_batching_merges_concurrent_requests(fashion_artifact, jpegs, predictor,
                                                   monkeypatch) -> None:
    """12 concurrent requests, one worker: the first backend call is held until all 12 are
    admitted (the server's in-flight gauge says so), so the other 11 queue up and are run
    in batches of up to 8 - merged because they were waiting, not because they happened to
    fall inside a 30 ms window."""
    from edgeinfer.serve.models import ServedModel

    real = ServedModel.infer
    release = threading.Event()

    def held_infer(self, frames):
        assert release.wait(WITHIN_S)
        return real(self, frames)

    monkeypatch.setattr(ServedModel, "infer", held_infer)
    cfg = ServeConfig(port=0, max_batch=8, batch_window_ms=WITHIN_S * 1000, workers=1,
                      timeout_s=WITHIN_S)
    images = jpegs[:6] * 2
    results: dict[int, np.ndarray] = {}
    with serve_in_thread([fashion_artifact], cfg) as url:

        def one(i: int) -> None:
            c = _client(url)
            results[i] = c.infer("fashion", [_bytes_input([images[i]])]).as_numpy("probs")[0]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(images))]
        for t in threads:
            t.start()
        until(lambda: metric(httpx.get(f"{url}/metrics").text, "edgeinfer_in_flight")
              >= len(images), "all 12 requests admitted")
        release.set()
        for t in threads:
            t.join(WITHIN_S)
        text = httpx.get(f"{url}/metrics").text
    for i, img in enumerate(images):
        np.testing.assert_array_equal(results[i], predictor.predict_probs(img))
    calls = float(re.search(r'edgeinfer_batch_frames_count\{model="fashion"\} (\S+)', text)[1])
    frames = float(re.search(r'edgeinfer_batch_frames_sum\{model="fashion"\} (\S+)', text)[1])
    assert frames == len(images) and calls <= 3  # 1 held, then 11 in batches of <= 8


def test_listening_socket_disables_nagle() -> None:
    """asyncio sets TCP_NODELAY on accepted sockets only when the socket's proto is TCP;
    without it every keep-alive response waited ~40 ms for the client's delayed ACK."""
    import socket

    from edgeinfer.serve.server import bind

    sock = bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        sock.close()


def test_several_models_by_file_stem(fashion_artifact, jpegs, tmp_path) -> None:
    import shutil

    from edgeinfer.errors import ConfigError
    from edgeinfer.serve.models import ModelSet

    other = tmp_path / "shoes.onnx"
    shutil.copy(fashion_artifact, other)
    with serve_in_thread([fashion_artifact, other], ServeConfig(port=0)) as url:
        c = _client(url)
        assert c.is_model_ready("fashion") and c.is_model_ready("shoes")
        a = c.infer("fashion", [_bytes_input(jpegs[:1])]).as_numpy("probs")
        b = c.infer("shoes", [_bytes_input(jpegs[:1])]).as_numpy("probs")
        np.testing.assert_array_equal(a, b)
        r = _post(f"{url}/predict", content=jpegs[0])
        assert r.status_code == 400 and "fashion, shoes" in r.json()["error"]
    same = tmp_path / "sub"
    same.mkdir()
    shutil.copy(fashion_artifact, same / "fashion.onnx")
    with pytest.raises(ConfigError, match="both be served as 'fashion'"):
        ModelSet.load([fashion_artifact, same / "fashion.onnx"], ServeConfig())


def test_serve_command_refuses_bad_input_with_exit_2(tmp_path, capsys) -> None:
    from edgeinfer.cli import main

    assert main(["serve", str(tmp_path / "none.onnx"), "--port", "0"]) == 2
    assert main(["serve", str(tmp_path / "none.onnx"), "--port", "70000"]) == 2
    err = capsys.readouterr().err
    assert "does not exist" in err and "port" in err and "Traceback" not in err


def test_serve_missing_provider_exit_2(fashion_artifact, capsys) -> None:
    import onnxruntime as ort

    from edgeinfer.cli import main

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has CUDA: the missing-provider path cannot be shown")
    assert main(["serve", str(fashion_artifact), "--port", "0", "--provider", "cuda"]) == 2
    assert "cuda" in capsys.readouterr().err.lower()


def test_tta_served_equals_predictor_tta(fashion_artifact, jpegs) -> None:
    """--tta runs the Predictor's views in the same batched call, micro-batched or not."""
    from edgeinfer.runtime.predictor import Predictor

    want = np.stack([Predictor(fashion_artifact, tta="hflip").predict_probs(j) for j in jpegs])
    for max_batch in (1, 4):
        cfg = ServeConfig(port=0, tta="hflip", max_batch=max_batch)
        with serve_in_thread([fashion_artifact], cfg) as url:
            got = _client(url).infer("fashion", [_bytes_input(jpegs)]).as_numpy("probs")
        np.testing.assert_array_equal(got, want)


def test_timeout_504_abandons_the_job(fashion_artifact, jpegs, monkeypatch) -> None:
    """A request past its deadline gets 504, and its job stops between images instead of
    holding the only worker: the next request is served, and the abandoned frames never
    reach the model. The decode of the request's second image is held until the 504 is
    back (an event, not a slow image), so the deadline falls mid-job on any machine."""
    from edgeinfer.serve import models as served

    real = served.load_image
    decoded = []
    answered = threading.Event()

    def held_load_image(*args, **kw):
        decoded.append(1)
        if len(decoded) == 2:  # the 12-image request's second image: wait for the 504
            assert answered.wait(WITHIN_S)
        return real(*args, **kw)

    monkeypatch.setattr(served, "load_image", held_load_image)
    cfg = ServeConfig(port=0, timeout_s=2.0, workers=1)
    with serve_in_thread([fashion_artifact], cfg) as url:
        c = _client(url)
        with pytest.raises(InferenceServerException, match="504"):
            c.infer("fashion", [_bytes_input([jpegs[0]] * 12)])
        answered.set()
        assert c.infer("fashion", [_bytes_input(jpegs[:1])]).as_numpy("probs").shape == (1, 10)
        text = httpx.get(f"{url}/metrics").text
    assert len(decoded) == 3  # two of the 12, then the next request's one
    assert 'edgeinfer_errors_total{type="Timeout"} 1.0' in text
    assert 'edgeinfer_batch_frames_sum{model="fashion"} 1.0' in text


def test_tflite_workers_get_an_interpreter_each(fashion_tflite, jpegs) -> None:
    """--workers N on a TFLite artifact: N LiteRT interpreters (one was shared before, so
    the workers took turns), and the served result equals the in-process Predictor's."""
    from edgeinfer.runtime.predictor import Predictor
    from edgeinfer.serve.models import ModelSet

    path = fashion_tflite.path
    models = ModelSet.load([path], ServeConfig(workers=3))
    (m,) = list(models)
    assert m.platform == "tensorflow_lite" and m.predictor.backend.pool_size == 3
    want = np.stack([Predictor(path).predict_probs(j) for j in jpegs[:3]])
    with serve_in_thread(models, ServeConfig(port=0, workers=3)) as url:
        results: dict[int, np.ndarray] = {}

        def one(i: int) -> None:
            results[i] = _client(url).infer(m.name, [_bytes_input([jpegs[i]])]).as_numpy(
                "probs")[0]

        threads = [threading.Thread(target=one, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    np.testing.assert_array_equal(np.stack([results[i] for i in range(3)]), want)
