"""Read an artifact's metadata without loading it for inference (and without the onnx package)."""

from __future__ import annotations

import onnxruntime as ort

from edgeinfer.artifact import ArtifactMetadata, sniff_format
from edgeinfer.data.files import ModelSource, load_model_bytes
from edgeinfer.errors import ModelError


def read_metadata(model: ModelSource) -> ArtifactMetadata:
    """Metadata of an ONNX or TFLite artifact, told apart by content (not by file name)."""
    data, name = load_model_bytes(model)
    try:
        fmt = sniff_format(data)
    except ModelError as e:
        raise ModelError(f"{name}: {e}") from None
    if fmt == "tflite":
        from edgeinfer.runtime.tflite_backend import read_props

        return ArtifactMetadata.from_props(read_props(data, name) or {}, name)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    try:
        session = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several pybind error types
        raise ModelError(f"{name} cannot be loaded as an ONNX model (damaged, truncated or "
                         f"not ONNX): {type(e).__name__}") from e
    from edgeinfer.runtime.onnx_backend import session_props

    return ArtifactMetadata.from_props(session_props(session, name), name)


__all__ = ["read_metadata"]
