"""The edgeinfer props inside a .tflite: one flatbuffer metadata entry named ``edgeinfer``.

Torch- and TensorFlow-free (LiteRT's schema bindings only), so every TFLite route (torch
through litert-torch, Keras through the TFLite converter) writes metadata the same way.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from edgeinfer.artifact import TFLITE_METADATA_NAME as METADATA_NAME


def embed_metadata(model: bytes, props: dict[str, str]) -> bytes:
    """``model`` with a flatbuffer metadata entry ``edgeinfer`` holding ``props`` as JSON.

    Uses the LiteRT flatbuffer schema's object API (``ai_edge_litert.tools.
    flatbuffer_utils``); an existing ``edgeinfer`` entry is replaced.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(bytearray(model))
    obj.metadata = [m for m in (obj.metadata or []) if _name(m.name) != METADATA_NAME]
    buf = schema.BufferT()
    buf.data = np.frombuffer(json.dumps(props, sort_keys=True).encode("utf-8"), np.uint8)
    obj.buffers.append(buf)
    md = schema.MetadataT()
    md.name = METADATA_NAME
    md.buffer = len(obj.buffers) - 1
    obj.metadata.append(md)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def _name(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
