"""Bounded memory on a real server: the pixel budget charged per request for frames x TTA
views, the global in-flight byte budget (503 + Retry-After), the JSON size cap, the body
deadline and the connection cap. Real images, real uvicorn on 127.0.0.1, real clients."""

from __future__ import annotations

import asyncio
import re
import socket

import cv2
import httpx
import numpy as np

from edgeinfer.data.datasets import sample_photos
from edgeinfer.serve.config import ServeConfig
from edgeinfer.serve.server import serve_in_thread
from tests.serve.conftest import encode
from tests.serve.waits import WITHIN_S, infer_body_cut_by_the_server, until, until_metric


def _photo(side: int) -> bytes:
    return encode(cv2.resize(sample_photos()["coffee"], (side, side)))


def _bytes_doc(images: list[bytes]) -> dict:
    import base64

    return {"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [len(images)],
                        "data": [base64.b64encode(i).decode() for i in images]}]}


def _inflight(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return float(re.search(r"^edgeinfer_inflight_bytes (\S+)", text, re.M)[1])


def test_pixel_budget_is_per_request_and_counts_tta_views(fashion_artifact) -> None:
    """Three 600x600 photos (0.36 MP each) pass one by one and two together, but not three
    together under a 1 MP budget; with hflip+crops one 600x600 frame is 10 views of 525x525
    (2.8 MP computed) and is refused although the frame itself is 0.36 MP."""
    img = _photo(600)
    with serve_in_thread([fashion_artifact], ServeConfig(port=0, max_pixels=1_000_000)) as url:
        infer = f"{url}/v2/models/fashion/infer"
        assert httpx.post(infer, json=_bytes_doc([img] * 2)).status_code == 200
        r = httpx.post(infer, json=_bytes_doc([img] * 3))
        assert r.status_code == 413 and "add up to more than 1 MP" in r.json()["error"]
        tensor = np.zeros((3, 600, 600, 3), np.uint8)
        r = httpx.post(infer, content=_binary_uint8(tensor), headers=_binary_headers(tensor))
        assert r.status_code == 413, r.text
    cfg = ServeConfig(port=0, max_pixels=1_000_000, tta="hflip+crops")
    with serve_in_thread([fashion_artifact], cfg) as url:
        for r in (httpx.post(f"{url}/predict", content=img),
                  httpx.post(f"{url}/v2/models/fashion/infer", json=_bytes_doc([img]))):
            assert r.status_code == 413, r.text
            assert "hflip+crops TTA (10 views per frame)" in r.json()["error"]
        assert httpx.post(f"{url}/predict", content=_photo(250)).status_code == 200


def _binary_uint8(t: np.ndarray) -> bytes:
    return _binary_head(t) + t.tobytes()


def _binary_head(t: np.ndarray) -> bytes:
    import json

    return json.dumps({"inputs": [{"name": "frame", "datatype": "UINT8", "shape": list(t.shape),
                                   "parameters": {"binary_data_size": t.nbytes}}]}).encode()


def _binary_headers(t: np.ndarray) -> dict[str, str]:
    return {"inference-header-content-length": str(len(_binary_head(t)))}


def test_inflight_byte_budget_503_then_released(fashion_artifact, jpegs) -> None:
    """A slow upload holds 600 KB of a 1 MiB budget: a second 600 KB body gets 503 +
    Retry-After (not a wait, not a 5xx crash); once the first is answered the budget is
    back to 0 and the same request passes. A frame whose decoded pixels alone exceed the
    budget can never fit: 413."""
    cfg = ServeConfig(port=0, max_body_bytes=1 << 20, max_inflight_bytes=1 << 20,
                      timeout_s=WITHIN_S)
    pad = b" " * 600_000
    body = b'{"inputs": [{"name": "frame", "datatype": "UINT8", "shape": [1, 1, 1, 3], ' \
           b'"data": [1, 2, 3]}]' + pad + b"}"
    with serve_in_thread([fashion_artifact], cfg) as url:
        infer = f"{url}/v2/models/fashion/infer"

        async def slow_then_fast() -> tuple[httpx.Response, httpx.Response, float]:
            release = asyncio.Event()

            async def slow_body():  # the last byte only once the second request is answered
                yield body[:-1]
                await release.wait()
                yield body[-1:]

            async with httpx.AsyncClient(timeout=WITHIN_S) as c:
                slow = asyncio.create_task(c.post(infer, content=slow_body()))
                held = await until_metric(c, url, "edgeinfer_inflight_bytes", 600_000)
                fast = await c.post(infer, content=body)
                release.set()
                return await slow, fast, held

        slow, fast, held = asyncio.run(slow_then_fast())
        assert held >= 600_000
        assert fast.status_code == 503 and fast.headers["retry-after"] == "1", fast.text
        assert "budget" in fast.json()["error"]
        assert slow.status_code == 200, slow.text
        assert _inflight(url) == 0
        assert httpx.post(infer, content=body).status_code == 200
        big = encode(np.full((700, 700, 3), 128, np.uint8))  # tiny JPEG, 1.5 MB decoded
        r = httpx.post(f"{url}/predict", content=big)
        assert r.status_code == 413 and "in-flight memory budget" in r.json()["error"]
        assert _inflight(url) == 0


def test_json_tensor_cap_binary_passes(fashion_artifact) -> None:
    t = np.random.default_rng(0).integers(0, 255, (1, 100, 100, 3), np.uint8)
    cfg = ServeConfig(port=0, max_json_bytes=64 * 1024)
    with serve_in_thread([fashion_artifact], cfg) as url:
        infer = f"{url}/v2/models/fashion/infer"
        r = httpx.post(infer, json={"inputs": [{"name": "frame", "datatype": "UINT8",
                                                "shape": list(t.shape),
                                                "data": t.ravel().tolist()}]})
        assert r.status_code == 413 and "binary data" in r.json()["error"]
        r = httpx.post(infer, content=_binary_uint8(t), headers=_binary_headers(t))
        assert r.status_code == 200, r.text


def test_slow_upload_408_within_body_timeout(fashion_artifact) -> None:
    """A body that has not arrived after 0.5 s gets 408 from the body deadline, although the
    request deadline is far away (a completed body would be a 400 for its empty inputs).
    The rest of the body is sent only once the server has answered (its metrics say so)."""
    cfg = ServeConfig(port=0, timeout_s=10 * WITHIN_S, body_timeout_s=0.5)
    with serve_in_thread([fashion_artifact], cfg) as url:
        r = infer_body_cut_by_the_server(url)
    assert r.status_code == 408 and "did not arrive" in r.json()["error"]


def test_connection_cap_503(fashion_artifact, jpegs) -> None:
    """Two idle connections fill a cap of 2: a third is answered 503; once they close, 200.
    The server registers connections when it gets to them, so the test asks until it has
    (bounded), instead of sleeping a fixed 0.2 s and hoping."""
    with serve_in_thread([fashion_artifact], ServeConfig(port=0, max_connections=2)) as url:
        host, port = url.removeprefix("http://").split(":")
        idle = [socket.create_connection((host, int(port))) for _ in range(2)]
        statuses: list[int] = []
        try:
            until(lambda: statuses.append(
                httpx.post(f"{url}/predict", content=jpegs[0]).status_code) or
                statuses[-1] == 503, "a third connection refused with 503")
        finally:
            for s in idle:
                s.close()
        assert set(statuses) <= {200, 503}
        until(lambda: httpx.post(f"{url}/predict", content=jpegs[0]).status_code == 200,
              "served again once the idle connections closed")


def test_declared_bodies_reserve_the_budget_whole(fashion_artifact) -> None:
    """Three slow uploads of 400 KB (Content-Length declared) against a 1 MiB budget: two
    reserve theirs and pass, the third is refused at once (the rest of every body is sent
    only once the server has counted that refusal). Charged chunk by chunk, all three
    were let in with a share each (here all three happened to finish; with 8 uploads of 3 MiB
    against 16 MiB all 8 failed half way, tools/serve_memory.py)."""
    cfg = ServeConfig(port=0, max_body_bytes=512 * 1024, max_inflight_bytes=1 << 20,
                      timeout_s=WITHIN_S)
    body = b'{"inputs": [{"name": "frame", "datatype": "UINT8", "shape": [1, 1, 1, 3], ' \
           b'"data": [1, 2, 3]}]' + b" " * 400_000 + b"}"
    with serve_in_thread([fashion_artifact], cfg) as url:

        async def three() -> list[int]:
            release = asyncio.Event()

            async def slow():  # the second part only once one upload has been refused
                yield body[:300_000]
                await release.wait()
                yield body[300_000:]

            async with httpx.AsyncClient(timeout=WITHIN_S) as c:
                posts = [asyncio.create_task(
                    c.post(f"{url}/v2/models/fashion/infer", content=slow(),
                           headers={"content-length": str(len(body))})) for _ in range(3)]
                await until_metric(c, url, 'edgeinfer_errors_total{type="Overloaded"}')
                release.set()
                rs = await asyncio.gather(*posts)
            return sorted(r.status_code for r in rs)

        assert asyncio.run(three()) == [200, 200, 503]
        assert _inflight(url) == 0
