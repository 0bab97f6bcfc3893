"""Hypothesis-generated bodies and headers against a live server: only 4xx (or 200 for
an input that happens to be valid), never a 5xx, and the server stays up."""

from __future__ import annotations

import base64
import json
import struct

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

DATATYPES = ["BYTES", "UINT8", "FP32", "INT64", "BOOL", "uint8", "", None, 3]
shapes = st.lists(st.one_of(st.integers(-2, 6), st.just(10**12), st.text(max_size=2)),
                  max_size=5)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-300, 300) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=3),
    max_leaves=12)


@st.composite
def infer_docs(draw) -> dict:
    inp = {"name": draw(st.sampled_from(["frame", "frame", "x", ""])),
           "datatype": draw(st.sampled_from(DATATYPES)), "shape": draw(shapes)}
    if draw(st.booleans()):
        inp["data"] = draw(st.one_of(json_values, st.lists(st.integers(-5, 300), max_size=60),
                                     st.lists(st.text(max_size=12), max_size=3)))
    if draw(st.booleans()):
        inp["parameters"] = {"binary_data_size": draw(st.integers(-5, 200))}
    doc = {"inputs": draw(st.sampled_from([[inp], [inp, inp], [], inp]))}
    if draw(st.booleans()):
        doc["outputs"] = [{"name": draw(st.sampled_from(["probs", "y"])),
                           "parameters": {"classification": draw(json_values),
                                          "binary_data": draw(json_values)}}]
    if draw(st.booleans()):
        doc["parameters"] = draw(json_values)
    return doc


@st.composite
def requests(draw, jpeg: bytes) -> tuple[str, bytes, dict[str, str]]:
    path = draw(st.sampled_from(["/v2/models/fashion/infer", "/v2/models/fashion/infer",
                                 "/v2/models/fashion/versions/1/infer", "/predict",
                                 "/predict?top_k=3", "/v2/models/%00/infer"]))
    kind = draw(st.sampled_from(["json", "raw", "truncated", "binary"]))
    if kind == "json":
        body = json.dumps(draw(infer_docs())).encode()
    elif kind == "raw":
        body = draw(st.binary(max_size=512))
    elif kind == "truncated":
        body = jpeg[:draw(st.integers(0, len(jpeg)))]
    else:  # the binary extension with a possibly lying header length or element sizes
        n = draw(st.integers(0, 3))
        blob = b"".join(struct.pack("<I", draw(st.integers(0, 2 * len(jpeg)))) + jpeg
                        for _ in range(n))
        head = json.dumps({"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [n],
                                       "parameters": {"binary_data_size": len(blob)}}]})
        body = head.encode() + blob
    headers = {}
    if draw(st.booleans()):
        headers["content-type"] = draw(st.sampled_from(
            ["application/json", "image/jpeg", "text/plain", "multipart/form-data",
             "multipart/form-data; boundary=xyz", "application/octet-stream", "a/b;;="]))
    if draw(st.booleans()):
        headers["inference-header-content-length"] = draw(st.one_of(
            st.integers(-10, len(body) + 10).map(str), st.text(
                alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=6)))
    if draw(st.integers(0, 9)) == 0:
        headers["content-encoding"] = draw(st.sampled_from(["gzip", "identity", "br"]))
    return path, body, headers


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server, timeout=20) as c:
        yield c


@pytest.fixture(scope="module")
def small_jpeg(jpegs) -> bytes:
    return jpegs[0]


def test_fuzzed_requests_get_4xx_and_the_server_stays_up(client, small_jpeg) -> None:
    seen: dict[int, int] = {}

    @settings(max_examples=150, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(requests(small_jpeg))
    def check(req) -> None:
        path, body, headers = req
        r = client.post(path, content=body, headers=headers)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code == 200 or 400 <= r.status_code < 500, (r.status_code, r.text)
        if r.status_code != 200:
            doc = r.json()
            assert doc["error"] and "\n" not in doc["error"]

    check()
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 200
    # a valid request still works after the storm
    good = base64.b64encode(small_jpeg).decode()
    r = client.post("/v2/models/fashion/infer", json={"inputs": [
        {"name": "frame", "datatype": "BYTES", "shape": [1], "data": [good]}]})
    assert r.status_code == 200 and len(r.json()["outputs"][0]["data"]) == 10
    assert sum(v for k, v in seen.items() if 400 <= k < 500) > 100
