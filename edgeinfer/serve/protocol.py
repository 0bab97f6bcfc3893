"""Open Inference Protocol (KServe v2) codec: request bodies in, response bodies out.

Pure functions over bytes and numpy, no HTTP framework, so the codec is tested on its own
and the app stays thin. What is accepted for a model's one input (``frame``):

* ``BYTES``, shape ``[N]`` (or ``[N, 1]``): N encoded images (JPEG, PNG, ...), as OpenVINO
  Model Server takes them. In the binary tensor data extension (what ``tritonclient.http``
  sends by default) each element is a 4-byte little-endian length and the bytes; in JSON,
  where raw bytes cannot travel, each element is a base64 string.
* ``UINT8``, shape ``[N, H, W, C]``: raw frames in the artifact's frame colour order
  (BGR for OpenCV frames), as JSON ``data`` (flat or nested) or binary.

Outputs: ``probs`` (FP32 ``[N, K]``), or with ``"parameters": {"classification": k}``
Triton's classification extension: BYTES ``[N, k]`` strings ``"<value>:<index>:<label>"``
where value is printed as C++ ``std::to_string(float)`` prints it (``%f``, six decimals),
highest first. Outputs go back as JSON unless ``binary_data`` (per output) or
``binary_data_output`` (request) asks for the binary extension; then the JSON header is
followed by the raw tensors and ``Inference-Header-Content-Length`` says where it ends.

Every malformed request raises :class:`RequestError`, which carries its HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.runtime.topk import top_indices

HEADER_LENGTH = "inference-header-content-length"
#: Datatypes of the protocol and their numpy types (for error messages and byte sizes).
DATATYPES = ("BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BF16", "BYTES")


class RequestError(EdgeInferError, ValueError):
    """A request the server refuses; ``status`` is the HTTP status to answer with (4xx)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool
    classification: int  # 0: the tensor itself


@dataclass
class InferRequest:
    """A parsed infer request: either ``images`` (encoded) or ``tensor`` (uint8 NHWC)."""

    id: str | None
    outputs: list[RequestedOutput]
    images: list[bytes] | None = None
    tensor: np.ndarray | None = None
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.images) if self.images is not None else int(self.tensor.shape[0])


_ASCII_UINT = re.compile(r"[0-9]{1,18}")


# ---------------------------------------------------------------------------- parsing
def parse_uint(text: str, what: str) -> int:
    """A non-negative integer from a header or query string, or RequestError.

    Why not ``str.isdigit()`` + ``int()``: ``"²".isdigit()`` is true and ``int("²")``
    fails; ``int()`` also takes other scripts' digits, ``"1_0"`` and surrounding spaces,
    and a 5000-digit string raises past Python's 4300-digit conversion limit. Only ASCII
    digits, at most 18 of them (below 2**63), are a number here.
    """
    t = text.strip(" \t")
    if not _ASCII_UINT.fullmatch(t):
        raise RequestError(f"{what} must be a non-negative integer (ASCII digits, at most 18), "
                           f"got {text[:30]!r}")
    return int(t)


def split_body(body: bytes, header_length: str | None, max_json_bytes: int | None = None
               ) -> tuple[dict[str, Any], bytes]:
    """(JSON header, binary tail) of a request body.

    ``max_json_bytes`` caps the JSON part before it is parsed: Python holds a JSON list of
    small numbers at about 8 bytes per value (a 30 MB JSON tensor took 205 MB), so large
    tensors must come as binary data, which is used in place.
    """
    if header_length is None:
        head, tail = body, b""
    else:
        n = parse_uint(header_length, "Inference-Header-Content-Length")
        if n > len(body):
            raise RequestError(f"Inference-Header-Content-Length is {n} but the body has "
                               f"{len(body)} bytes")
        head, tail = body[:n], body[n:]
    if not head:
        raise RequestError("the request body is empty: send a JSON inference request")
    if max_json_bytes is not None and len(head) > max_json_bytes:
        raise RequestError(f"the JSON part of the request is {len(head)} bytes, above the limit "
                           f"of {max_json_bytes}: send tensors and images as binary data (the "
                           "binary tensor data extension, tritonclient's default)", 413)
    try:
        doc = json.loads(head)
    except RecursionError:  # e.g. 100 KB of "[": the C parser recurses per level
        raise RequestError("the request JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as e:  # also a number past 4300 digits
        raise RequestError(f"the request is not valid JSON ({_short(e)})") from None
    if not isinstance(doc, dict):
        raise RequestError(f"the request must be a JSON object, got {type(doc).__name__}")
    return doc, tail


def parse_infer(body: bytes, header_length: str | None, input_name: str,
                output_name: str | tuple[str, ...], max_images: int,
                max_json_bytes: int | None = None) -> InferRequest:
    """Parse and check an infer request for a model with one input and one output (or
    several, named by a tuple: a detector's boxes, scores, classes)."""
    doc, tail = split_body(body, header_length, max_json_bytes)
    rid = doc.get("id")
    if rid is not None and not isinstance(rid, str):
        raise RequestError("'id' must be a string")
    params = _params(doc.get("parameters"), "request")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(f"'inputs' must be a list of one input object ({input_name!r}): "
                           "this model has one input")
    inp = inputs[0]
    if inp.get("name") != input_name:
        raise RequestError(f"unknown input {str(inp.get('name'))[:60]!r}: this model's input "
                           f"is {input_name!r}")
    datatype = inp.get("datatype")
    shape = _shape(inp.get("shape"))
    iparams = _params(inp.get("parameters"), f"input {input_name!r}")
    binary_size = iparams.get("binary_data_size")
    if binary_size is not None:
        if isinstance(binary_size, bool) or not isinstance(binary_size, int) \
                or not 0 <= binary_size <= len(tail):
            raise RequestError(f"input {input_name!r}: binary_data_size {binary_size!r} does not "
                               f"fit the {len(tail)} bytes after the JSON header")
        raw: bytes | None = tail[:binary_size]
        if binary_size != len(tail):
            raise RequestError(f"{len(tail) - binary_size} bytes after the input's binary data "
                               "belong to no input")
        if "data" in inp:
            raise RequestError(f"input {input_name!r} has both 'data' and binary_data_size")
    else:
        raw = None
        if tail:
            raise RequestError("binary data follows the JSON header but no input has a "
                               "binary_data_size parameter")
        if "data" not in inp:
            raise RequestError(f"input {input_name!r} has no 'data' (and no binary_data_size)")
    req = InferRequest(id=rid, outputs=_outputs(doc, params, output_name), parameters=params)
    if datatype == "BYTES":
        if len(shape) not in (1, 2) or (len(shape) == 2 and shape[1] != 1):
            raise RequestError(f"a BYTES input holds encoded images and has shape [N] (or "
                               f"[N, 1]), got {shape}")
        n = shape[0]
        _check_count(n, max_images)
        req.images = _bytes_elements(raw, n) if raw is not None else _json_bytes(inp["data"], n)
    elif datatype == "UINT8":
        if len(shape) != 4:
            raise RequestError(f"a UINT8 input is a frame tensor [N, H, W, C], got shape {shape}")
        _check_count(shape[0], max_images)
        req.tensor = _uint8_tensor(raw, inp.get("data"), shape)
    else:
        hint = "" if datatype in DATATYPES else " (not a protocol datatype)"
        raise RequestError(f"input {input_name!r} has datatype {str(datatype)[:20]!r}{hint}: "
                           "send BYTES (encoded images) or UINT8 (frames [N, H, W, C])")
    return req


def _short(e: Exception) -> str:
    return " ".join(str(e).split())[:200]


def _params(v: Any, where: str) -> dict[str, Any]:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise RequestError(f"'parameters' of the {where} must be a JSON object")
    return v


def _shape(v: Any) -> list[int]:
    if not isinstance(v, list) or not v or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in v):
        raise RequestError(f"an input 'shape' must be a non-empty list of non-negative "
                           f"integers, got {str(v)[:60]}")
    return v


def _check_count(n: int, max_images: int) -> None:
    if n < 1:
        raise RequestError("the input holds no image (batch size 0)")
    if n > max_images:
        raise RequestError(f"{n} images in one request, above the limit of {max_images}: "
                           "split the batch", 413)


def _outputs(doc: dict[str, Any], params: dict[str, Any], output_name: str | tuple[str, ...]
             ) -> list[RequestedOutput]:
    default_binary = params.get("binary_data_output") is True
    names = (output_name,) if isinstance(output_name, str) else output_name
    outs = doc.get("outputs")
    if outs is None:  # all of them
        return [RequestedOutput(n, default_binary, 0) for n in names]
    if not isinstance(outs, list) or not outs:
        raise RequestError("'outputs' must be a non-empty list of output objects")
    result = []
    for o in outs:
        if not isinstance(o, dict) or o.get("name") not in names:
            name = o.get("name") if isinstance(o, dict) else o
            said = (f"output is {output_name!r}" if isinstance(output_name, str)
                    else f"outputs are {', '.join(names)}")
            raise RequestError(f"unknown output {str(name)[:60]!r}: this model's {said}")
        op = _params(o.get("parameters"), f"output {o['name']!r}")
        binary = op.get("binary_data", default_binary)
        if not isinstance(binary, bool):
            raise RequestError("the output parameter 'binary_data' must be true or false")
        k = op.get("classification", 0)
        if isinstance(k, bool) or not isinstance(k, int) or k < 0:
            raise RequestError(f"the output parameter 'classification' must be a non-negative "
                               f"integer (classes to return), got {str(k)[:20]}")
        result.append(RequestedOutput(o["name"], binary, k))
    return result


def _bytes_elements(raw: bytes, n: int) -> list[bytes]:
    """The binary BYTES layout: per element a uint32 LE length, then that many bytes."""
    items, pos = [], 0
    for i in range(n):
        if pos + 4 > len(raw):
            raise RequestError(f"the binary BYTES data ends before element {i} of {n}")
        (size,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + size > len(raw):
            raise RequestError(f"BYTES element {i} claims {size} bytes but only "
                               f"{len(raw) - pos} follow")
        items.append(raw[pos:pos + size])
        pos += size
    if pos != len(raw):
        raise RequestError(f"{len(raw) - pos} bytes after the last of the {n} BYTES elements: "
                           "the shape and the data disagree")
    return items


def _json_bytes(data: Any, n: int) -> list[bytes]:
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], list):
        data = data[0]  # [[...]] for shape [N, 1] written nested
    if isinstance(data, list) and all(isinstance(d, list) and len(d) == 1 for d in data):
        data = [d[0] for d in data]
    if not isinstance(data, list) or len(data) != n:
        raise RequestError(f"the BYTES data must be a list of {n} base64 strings")
    out = []
    for i, s in enumerate(data):
        if not isinstance(s, str):
            raise RequestError(f"BYTES element {i} must be a base64 string in JSON (raw "
                               "bytes need the binary data extension)")
        try:
            out.append(base64.b64decode(s, validate=True))
        except (binascii.Error, ValueError):
            raise RequestError(f"BYTES element {i} is not valid base64: in JSON, images are "
                               "sent base64-encoded (or use the binary data extension)") from None
    return out


def _uint8_tensor(raw: bytes | None, data: Any, shape: list[int]) -> np.ndarray:
    count = math.prod(shape)  # Python ints: no overflow for absurd shapes
    if raw is not None:
        if len(raw) != count:
            raise RequestError(f"a UINT8 tensor of shape {shape} needs {count} bytes of binary "
                               f"data, got {len(raw)}")
        return np.frombuffer(raw, np.uint8).reshape(shape)
    try:
        a = np.asarray(data)
    except (ValueError, OverflowError, RecursionError):
        raise RequestError("the UINT8 data is a ragged list: send a flat (or evenly "
                           "nested) list of integers") from None
    if a.dtype.kind not in "iu" or a.dtype == np.bool_:
        raise RequestError(f"UINT8 data must be integers 0..255, got {a.dtype.name} values")
    if a.size != count:
        raise RequestError(f"UINT8 data has {a.size} values; shape {shape} needs {count}")
    if a.size and (a.min() < 0 or a.max() > 255):
        raise RequestError("UINT8 data must be integers 0..255")
    return a.astype(np.uint8).reshape(shape)


# ---------------------------------------------------------------------------- responses
def classification_strings(probs: np.ndarray, k: int, labels: tuple[str, ...]) -> list[str]:
    """Triton's ``"<value>:<index>:<label>"`` for the k most probable classes of each row.

    Row-major ``[N, k]`` flattened; ties go to the lower index (a stable sort, like the
    Predictor's top-k). ``k`` above the class count returns all classes.
    """
    k = min(k, probs.shape[1])
    out: list[str] = []
    for row in probs:
        order, vals = top_indices(row, k)
        out.extend(f"{v:f}:{i}:{labels[i]}" for i, v in zip(order, vals, strict=True))
    return out


def serialize_bytes(items: list[str]) -> bytes:
    """BYTES elements in the binary layout: uint32 LE length, then the UTF-8 bytes."""
    parts = []
    for s in items:
        b = s.encode()
        parts.append(struct.pack("<I", len(b)))
        parts.append(b)
    return b"".join(parts)


def encode_infer_response(model: str, version: str, req: InferRequest, probs: np.ndarray,
                          labels: tuple[str, ...]) -> tuple[bytes, dict[str, str]]:
    """(body, extra headers) of an infer response; binary outputs follow the JSON header."""
    outputs, tail = [], []
    n = probs.shape[0]
    for o in req.outputs:
        if o.classification:
            k = min(o.classification, probs.shape[1])
            strings = classification_strings(probs, k, labels)
            entry: dict[str, Any] = {"name": o.name, "datatype": "BYTES", "shape": [n, k]}
            if o.binary:
                blob = serialize_bytes(strings)
                entry["parameters"] = {"binary_data_size": len(blob)}
                tail.append(blob)
            else:
                entry["data"] = strings
        else:
            entry = {"name": o.name, "datatype": "FP32", "shape": [n, int(probs.shape[1])]}
            if o.binary:
                blob = np.ascontiguousarray(probs, "<f4").tobytes()
                entry["parameters"] = {"binary_data_size": len(blob)}
                tail.append(blob)
            else:
                entry["data"] = probs.ravel().tolist()
        outputs.append(entry)
    return response_body(model, version, req, outputs, tail)


def response_body(model: str, version: str, req: InferRequest, outputs: list[dict[str, Any]],
                  tail: list[bytes]) -> tuple[bytes, dict[str, str]]:
    """(body, extra headers) of an infer response from its output entries: the JSON header,
    then the binary outputs in order (the binary tensor extension), or JSON alone. One
    place for classifiers and detectors (serve/detect.py)."""
    doc: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": outputs}
    if req.id is not None:
        doc["id"] = req.id
    head = json.dumps(doc, separators=(",", ":")).encode()
    if not tail:
        return head, {"content-type": "application/json"}
    return head + b"".join(tail), {"content-type": "application/octet-stream",
                                   HEADER_LENGTH: str(len(head))}


def error_body(message: str, kind: str) -> bytes:
    """The protocol's error object (``{"error": ...}``) plus the error's type."""
    return json.dumps({"error": " ".join(message.split()), "type": kind}).encode()
