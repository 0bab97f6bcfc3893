"""Hypothesis-generated bodies and headers against a live server: only 4xx (or 200 for
an input that happens to be valid), never a 5xx, and the server stays up.

The hostile part (deep nesting, numbers past Python's 4300-digit limit, digits of other
scripts where an integer is expected) is a bounded sample here; ``tools/serve_fuzz.py``
runs the long version and writes its status histogram to docs/serve/fuzz.md."""

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


#: Strings that look like integers to ``str.isdigit()`` or ``int()`` but are not ASCII
#: numbers, huge numbers, and near misses.
ODD_INTS = ["\u00b2", "\u0663", "\uff11", "\u2466", "1_0", " 7 ", "9" * 5000, "-1", "0x10",
            "1e3", "", "3\u00b2", "\u0661\u0660"]


@st.composite
def hostile(draw) -> tuple[str, bytes, dict[str, bytes]]:
    """Deeply nested JSON, huge numbers, odd Unicode digits in the query and the headers."""
    path = draw(st.sampled_from(["/v2/models/fashion/infer", "/predict"]))
    kind = draw(st.sampled_from(["nest", "nest_in_data", "huge", "query", "header"]))
    depth = draw(st.sampled_from([2, 64, 1000, 5000, 100_000]))
    open_, close = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"b":', "}]")]))
    if kind == "nest":
        body = (open_ * depth + "1" + close * draw(st.sampled_from([0, depth]))).encode()
    elif kind == "nest_in_data":
        body = ('{"inputs":[{"name":"frame","datatype":"UINT8","shape":[1,1,1,3],"data":'
                + "[" * depth + "1" + "]" * depth + "}]}").encode()
    elif kind == "huge":
        num = draw(st.sampled_from(["1" + "0" * 5000, "1e999", "-1e999", "1" * 400,
                                    str(2**64), str(-(2**63) - 1), "NaN", "Infinity"]))
        slot = draw(st.sampled_from(["shape", "data", "classification", "binary_data_size"]))
        inp = {"name": "frame", "datatype": "UINT8", "shape": [1, 1, 1, 3], "data": [1, 2, 3]}
        doc = {"inputs": [inp], "outputs": [{"name": "probs", "parameters": {
            "classification": 2}}]}
        text = json.dumps(doc)
        if slot == "shape":
            text = text.replace("[1, 1, 1, 3]", f"[1, {num}, 1, 3]")
        elif slot == "data":
            text = text.replace("[1, 2, 3]", f"[1, {num}, 3]")
        elif slot == "classification":
            text = text.replace('"classification": 2', f'"classification": {num}')
        else:
            text = text.replace('"data": [1, 2, 3]', f'"parameters": {{"binary_data_size": '
                                                     f'{num}}}')
        body = text.encode()
    else:
        body = b"{}" if path != "/predict" else b"\xff\xd8"
    headers: dict[str, bytes] = {}
    odd = draw(st.sampled_from(ODD_INTS)).strip().encode() or b"x"  # clients refuse " 7 "
    if kind == "query":
        path = draw(st.sampled_from(["/predict?top_k=", "/predict?model=fashion&top_k="]))
        path += draw(st.sampled_from(ODD_INTS))
        body = draw(st.sampled_from([b"x", b"\xff\xd8\xff"]))
    elif kind == "header":
        name = draw(st.sampled_from(["inference-header-content-length", "content-type"]))
        headers[name] = odd
    return path, body, headers


def _send(client: httpx.Client, path: str, body: bytes, headers) -> httpx.Response:
    return client.post(path, content=body, headers=headers)


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


@pytest.mark.parametrize("path, body", [
    ("/v2/models/fashion/infer", b"[" * 100_000),  # RecursionError in the JSON parser
    ("/predict?top_k=\u00b2", b"x"),  # "\u00b2".isdigit() is True, int() fails
    ("/predict?top_k=" + "9" * 5000, b"x"),  # past int()'s 4300-digit limit
])
def test_the_three_known_500s_are_400(client, path, body) -> None:
    r = client.post(path, content=body)
    assert r.status_code == 400, r.text
    assert r.json()["type"] == "RequestError"


def test_hostile_nesting_numbers_and_digits_get_4xx(client, small_jpeg) -> None:
    seen: dict[int, int] = {}

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(hostile())
    def check(req) -> None:
        path, body, headers = req
        r = _send(client, path, body, headers)
        seen[r.status_code] = seen.get(r.status_code, 0) + 1
        assert r.status_code == 200 or 400 <= r.status_code < 500, (path, r.status_code, r.text)

    check()
    assert sum(v for k, v in seen.items() if 400 <= k < 500) >= 45
    assert client.post("/predict", content=small_jpeg).status_code == 200
