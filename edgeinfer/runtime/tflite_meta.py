"""Reading a .tflite flatbuffer's own tables with LiteRT's schema bindings: the edgeinfer
metadata, and the signature table checked before LiteRT is asked to use it.

Why apart from the backend: both are read from the bytes, without an interpreter, and
both must hold against a damaged file. LiteRT's flatbuffer verifier checks the file's
structure, not what its indices point at: a SignatureDef whose subgraph index is past the
subgraphs (one flipped bit, found by tools/fuzz_artifacts.py for issue 31) made the
interpreter's signature runner read wild memory, a SIGSEGV in ``edgeinfer info``.
"""

from __future__ import annotations

import json
from typing import Any

from edgeinfer.artifact import TFLITE_IDENTIFIER
from edgeinfer.artifact import TFLITE_METADATA_NAME as METADATA_NAME
from edgeinfer.errors import ModelError
from edgeinfer.errors import one_line as _one_line

#: More signatures than any model needs (an edgeinfer artifact has two): a longer table
#: is damage, and checking it would walk the whole file.
MAX_SIGNATURES = 1024


def _schema(source: str) -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError as e:  # pragma: no cover - tflite_runtime-only installs
        raise ModelError(f"reading metadata from {source} needs ai-edge-litert's schema "
                         "bindings: pip install 'edgeinfer[tflite]' (ai-edge-litert)") from e
    return schema


def read_props(data: bytes | bytearray | memoryview,
               source: str = "model") -> dict[str, str] | None:
    """The edgeinfer props embedded in a .tflite flatbuffer, or None if it has none."""
    data = bytes(data)
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelError(f"{source} is not a TFLite model (no 'TFL3' file identifier); "
                         "is the file complete?")
    schema = _schema(source)
    try:
        m = schema.Model.GetRootAs(data, 0)
        for i in range(m.MetadataLength()):
            md = m.Metadata(i)
            if (md.Name() or b"").decode("utf-8", "replace") != METADATA_NAME:
                continue
            buf = m.Buffers(md.Buffer())
            if buf.Offset() > 1:  # data stored after the flatbuffer (large models)
                raw = data[buf.Offset(): buf.Offset() + buf.Size()]
            else:
                raw = buf.DataAsNumpy().tobytes() if buf.DataLength() else b""
            props = json.loads(raw.decode("utf-8"))
            if not isinstance(props, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in props.items()):
                raise ValueError("the metadata is not a JSON object of strings")
            return props
    except (ValueError, IndexError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise ModelError(f"{source} has damaged TFLite metadata: {_one_line(e)}") from None
    except Exception as e:  # noqa: BLE001 - flatbuffers raises struct.error and others
        raise ModelError(f"{source} is a damaged TFLite file: {_one_line(e)}") from None
    return None


def check_signatures(data: bytes, source: str = "model") -> None:
    """Every SignatureDef's subgraph and tensor indices inside the model, else ModelError."""
    schema = _schema(source)
    try:
        m = schema.Model.GetRootAs(data, 0)
        n, count = m.SubgraphsLength(), m.SignatureDefsLength()
        if count > MAX_SIGNATURES:
            raise ValueError(f"{count} signatures")
        for i in range(count):
            sd = m.SignatureDefs(i)
            key = (sd.SignatureKey() or b"").decode("utf-8", "replace")
            g = sd.SubgraphIndex()
            if not 0 <= g < n:
                raise ValueError(f"signature {key!r} names subgraph {g} of {n}")
            tensors = m.Subgraphs(g).TensorsLength()
            maps = [sd.Inputs(j) for j in range(sd.InputsLength())]
            for t in maps + [sd.Outputs(j) for j in range(sd.OutputsLength())]:
                if not 0 <= t.TensorIndex() < tensors:
                    raise ValueError(f"signature {key!r} names tensor {t.TensorIndex()} of "
                                     f"{tensors}")
    except Exception as e:  # noqa: BLE001 - flatbuffers raises struct.error and others
        raise ModelError(f"{source} is a damaged TFLite file: {_one_line(e)}; copy or "
                         "convert it again") from None


__all__ = ["MAX_SIGNATURES", "check_signatures", "read_props"]
