"""The KServe v2 codec on its own: binary tensor data, JSON data, classification strings."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import pytest

from edgeinfer.serve.protocol import (
    RequestError,
    classification_strings,
    encode_infer_response,
    parse_infer,
    serialize_bytes,
)


def _binary_request(items: list[bytes], **outputs) -> tuple[bytes, str]:
    blob = b"".join(struct.pack("<I", len(b)) + b for b in items)
    head = {"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [len(items)],
                        "parameters": {"binary_data_size": len(blob)}}], **outputs}
    h = json.dumps(head).encode()
    return h + blob, str(len(h))


def test_binary_bytes_elements_round_trip() -> None:
    items = [b"\xff\xd8abc", b"", b"x" * 300]
    body, hl = _binary_request(items)
    req = parse_infer(body, hl, "frame", "probs", 8)
    assert req.images == items and req.tensor is None
    assert req.outputs[0].name == "probs" and not req.outputs[0].binary


def test_json_bytes_are_base64_and_uint8_may_be_nested() -> None:
    body = json.dumps({"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [2, 1],
                                   "data": [[base64.b64encode(b"ab").decode()],
                                            [base64.b64encode(b"cd").decode()]]}]}).encode()
    assert parse_infer(body, None, "frame", "probs", 8).images == [b"ab", b"cd"]
    t = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    for data in (t.ravel().tolist(), t.tolist()):
        body = json.dumps({"inputs": [{"name": "frame", "datatype": "UINT8",
                                       "shape": [1, 2, 2, 3], "data": data}]}).encode()
        np.testing.assert_array_equal(parse_infer(body, None, "frame", "probs", 8).tensor, t)


@pytest.mark.parametrize("doc, match", [
    ({"inputs": []}, "one input"),
    ({"inputs": [{"name": "x", "datatype": "UINT8", "shape": [1], "data": [1]}]},
     "unknown input 'x'"),
    ({"inputs": [{"name": "frame", "datatype": "FP32", "shape": [1, 1, 1, 3],
                  "data": [0.1, 0.2, 0.3]}]}, "datatype 'FP32'"),
    ({"inputs": [{"name": "frame", "datatype": "UINT8", "shape": [1, 2, 2, 3],
                  "data": [1, 2, 3]}]}, "needs 12"),
    ({"inputs": [{"name": "frame", "datatype": "UINT8", "shape": [1, 1, 1, 3],
                  "data": [1, 2, 300]}]}, "0..255"),
    ({"inputs": [{"name": "frame", "datatype": "UINT8", "shape": [1, 1, 1, 3],
                  "data": [1, 2.5, 3]}]}, "integers"),
    ({"inputs": [{"name": "frame", "datatype": "UINT8", "shape": [1, 1, 3],
                  "data": [1, 2, 3]}]}, r"\[N, H, W, C\]"),
    ({"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [1], "data": ["%%"]}]},
     "base64"),
    ({"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [-1], "data": []}]},
     "non-negative"),
    ({"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [9], "data": []}]},
     "limit of 8"),
    ({"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [1], "data": ["YQ=="]}],
      "outputs": [{"name": "logits"}]}, "unknown output 'logits'"),
    ({"inputs": [{"name": "frame", "datatype": "BYTES", "shape": [1], "data": ["YQ=="]}],
      "outputs": [{"name": "probs", "parameters": {"classification": -1}}]}, "classification"),
    ([1, 2], "JSON object"),
])
def test_bad_requests_name_the_problem(doc, match) -> None:
    with pytest.raises(RequestError, match=match) as e:
        parse_infer(json.dumps(doc).encode(), None, "frame", "probs", 8)
    assert 400 <= e.value.status < 500


def test_binary_framing_errors() -> None:
    body, hl = _binary_request([b"abc", b"defg"])
    for cut in (len(body) - 1, int(hl) + 2):
        with pytest.raises(RequestError, match="binary_data_size|BYTES|ends"):
            parse_infer(body[:cut], hl, "frame", "probs", 8)
    for bad in ("x", "-1", str(len(body) + 1)):
        with pytest.raises(RequestError, match="Inference-Header-Content-Length"):
            parse_infer(body, bad, "frame", "probs", 8)
    with pytest.raises(RequestError, match="bytes after"):
        parse_infer(body + b"zz", hl, "frame", "probs", 8)


def test_classification_strings_follow_triton() -> None:
    probs = np.array([[0.1, 0.6, 0.3], [0.25, 0.25, 0.5]], np.float32)
    got = classification_strings(probs, 2, ("a", "b", "c"))
    # Triton prints the value with std::to_string (six decimals); ties: lower index first
    assert got == ["0.600000:1:b", "0.300000:2:c", "0.500000:2:c", "0.250000:0:a"]


def test_binary_response_layout() -> None:
    body, hl = _binary_request([b"a"], outputs=[
        {"name": "probs", "parameters": {"binary_data": True}},
        {"name": "probs", "parameters": {"classification": 1, "binary_data": True}}])
    req = parse_infer(body, hl, "frame", "probs", 8)
    probs = np.array([[0.25, 0.75]], np.float32)
    data, headers = encode_infer_response("m", "1", req, probs, ("x", "y"))
    n = int(headers["inference-header-content-length"])
    head = json.loads(data[:n])
    sizes = [o["parameters"]["binary_data_size"] for o in head["outputs"]]
    tail = data[n:]
    assert len(tail) == sum(sizes)
    np.testing.assert_array_equal(np.frombuffer(tail[:sizes[0]], "<f4").reshape(1, 2), probs)
    assert tail[sizes[0]:] == serialize_bytes(["0.750000:1:y"])
