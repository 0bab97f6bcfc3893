"""Read an artifact's metadata without the converter (and without the onnx package)."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.errors import ModelError


def read_metadata(path: str | Path) -> ArtifactMetadata:
    """Metadata of an ONNX or TFLite artifact (.tflite: the flatbuffer's 'edgeinfer' entry)."""
    p = Path(path)
    if not p.is_file():
        raise ModelError(f"artifact {p} does not exist")
    if p.suffix.lower() == ".tflite":
        from edgeinfer.runtime.tflite_backend import read_tflite_metadata

        return read_tflite_metadata(p)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 4
    try:
        session = ort.InferenceSession(str(p), so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises several pybind error types
        raise ModelError(f"{p} cannot be loaded as an ONNX model (damaged, truncated or "
                         f"not ONNX): {type(e).__name__}") from e
    return ArtifactMetadata.from_props(session.get_modelmeta().custom_metadata_map, str(p))
