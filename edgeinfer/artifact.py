"""The artifact contract shared by the converter (writes) and the runtime (reads).

An edgeinfer artifact has one input, ``frame``: uint8, NHWC ``[batch, height, width, C]``
with C = 3 (the spec's ``frame_color`` order) or 1 (GRAY); batch, height and width are
dynamic in ONNX. It has one output, ``probs``: float32 ``[batch, num_classes]``, softmax
probabilities. Its metadata (ONNX ``metadata_props``; TFLite: the same JSON in the
flatbuffer's metadata) holds the keys below, each a JSON string.

Numpy-only on purpose: the runtime imports this, so it must stay lean.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from edgeinfer.detect_spec import DetectionSpec, parse_task
from edgeinfer.errors import ModelError
from edgeinfer.spec import PreprocessSpec

INPUT_NAME = "frame"
OUTPUT_NAME = "probs"
#: The tensor the baked preprocessing prefix hands to the model (an ONNX artifact's
#: internal name; parity/stages.py reads it to judge preprocessing and model apart).
PREFIX_OUTPUT = "edgeinfer_pixels"
#: An optional second output of an ONNX artifact: per-channel spatial mean and standard
#: deviation of the first model layers' activations, ``[batch, 2 * channels]`` (the field
#: monitor's label-free feature signal; converter/moments.py adds it).
MOMENTS_OUTPUT = "edgeinfer_moments"
FORMAT_VERSION = "1"

# TFLite: the flatbuffer's file identifier, the name of the metadata entry holding the
# props below as one JSON object, and the two signatures (see converter/export/tflite_torch.py).
TFLITE_IDENTIFIER = b"TFL3"
TFLITE_METADATA_NAME = "edgeinfer"
SIG_FRAME = "frame"
SIG_RESIZED = "resized"
#: The module attribute holding the prefix in the traced TFLite module: it becomes the scope
#: of the prefix's tensor names, which the int8 recipe matches to keep the prefix float and
#: parity/prefix.py follows to the tensor the prefix hands the model.
TFLITE_PREFIX_SCOPE = "edgeinfer_prefix"
FORMATS = ("onnx", "tflite")

KEY_FORMAT = "edgeinfer.format_version"
KEY_SPEC = "edgeinfer.spec"
KEY_LABELS = "edgeinfer.labels"
KEY_PROVENANCE = "edgeinfer.provenance"
KEY_PARITY = "edgeinfer.parity"
#: int8 settings (ONNX); read by ``info``, checked here with the rest.
KEY_QUANTIZATION = "edgeinfer.quantization"
#: the field monitor's reference profile (runtime/monitor/profile.py), absent when not built
KEY_MONITOR = "edgeinfer.monitor"
#: what the artifact does: "classify" (absent: every artifact before issue 28) or "detect"
KEY_TASK = "edgeinfer.task"
#: a detector's fit, box decoder and NMS (edgeinfer/detect_spec.py); only with task "detect"
KEY_DETECTION = "edgeinfer.detection"


def sniff_format(data: bytes | bytearray | memoryview) -> str:
    """``"tflite"`` or ``"onnx"`` from a model file's first bytes, never from its name.

    A TFLite flatbuffer carries ``TFL3`` at offset 4. An ONNX ModelProto is a protobuf whose
    first field is a tag byte with wire type 0 or 2 (``0x08`` ir_version in every exporter
    seen); anything else is refused here with a one-line error.
    """
    head = bytes(data[:8])
    if len(head) >= 8 and head[4:8] == TFLITE_IDENTIFIER:
        return "tflite"
    if head and head[0] & 0x07 in (0, 2) and 0x08 <= head[0] <= 0xA2:
        return "onnx"
    raise ModelError("the file is neither ONNX (a protobuf ModelProto) nor TFLite (no 'TFL3' "
                     f"identifier); it starts with {head[:8]!r}: is it complete?")


def _json(props: dict[str, str], key: str, kind: type, default: str) -> Any:
    """One metadata value parsed as JSON of the type every reader of it relies on: a
    provenance that is a list was an AttributeError traceback in ``info`` (issue 31)."""
    value = json.loads(props.get(key, default))
    if not isinstance(value, kind):
        raise ValueError(f"{key} is {type(value).__name__}, not a JSON "
                         f"{'object' if kind is dict else 'list'}")
    return value


@dataclass(frozen=True)
class ArtifactMetadata:
    """What an artifact says about itself: spec, labels, where it came from, its parity."""

    spec: PreprocessSpec
    labels: tuple[str, ...]
    provenance: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    #: the monitor's reference profile as stored (validated by ReferenceProfile.from_dict
    #: where it is used); empty when the artifact has none
    monitor: dict[str, Any] = field(default_factory=dict)
    #: "classify" or "detect"; a detector carries its DetectionSpec
    task: str = "classify"
    detection: DetectionSpec | None = None

    def to_props(self) -> dict[str, str]:
        """The key -> JSON-string map stored in the artifact."""
        props = {
            KEY_FORMAT: FORMAT_VERSION,
            KEY_SPEC: self.spec.to_json(),
            KEY_LABELS: json.dumps(list(self.labels)),
            KEY_PROVENANCE: json.dumps(self.provenance, sort_keys=True),
            KEY_PARITY: json.dumps(self.parity, sort_keys=True),
        }
        if self.monitor:
            props[KEY_MONITOR] = json.dumps(self.monitor, sort_keys=True)
        if self.task != "classify" or self.detection is not None:
            props[KEY_TASK] = self.task
            props[KEY_DETECTION] = self.detection.to_json() if self.detection else "null"
        return props

    @classmethod
    def from_props(cls, props: dict[str, str], source: str = "artifact") -> ArtifactMetadata:
        """Parse stored metadata; a file without it is not an edgeinfer artifact."""
        if KEY_SPEC not in props:
            raise ModelError(f"{source} has no edgeinfer metadata (no '{KEY_SPEC}'): convert "
                             "it with `edgeinfer convert`, or pass spec= and labels= to serve it")
        version = props.get(KEY_FORMAT, "?")
        if version != FORMAT_VERSION:
            raise ModelError(f"{source} has edgeinfer format version {version}; this edgeinfer "
                             f"reads version {FORMAT_VERSION}")
        try:
            spec = PreprocessSpec.from_json(props[KEY_SPEC])
            labels = _json(props, KEY_LABELS, list, "[]")
            provenance = _json(props, KEY_PROVENANCE, dict, "{}")
            parity = _json(props, KEY_PARITY, dict, "{}")
            _json(props, KEY_QUANTIZATION, dict, "{}")
            monitor = _json(props, KEY_MONITOR, dict, "{}")
            detection = json.loads(props[KEY_DETECTION]) if KEY_DETECTION in props else None
        except (ValueError, TypeError, RecursionError) as e:
            raise ModelError(f"{source} has damaged edgeinfer metadata: "
                             f"{' '.join(str(e).split())[:200]}") from None
        task, det = parse_task(props.get(KEY_TASK), detection, source)
        return cls(spec=spec, labels=tuple(str(v) for v in labels), provenance=provenance,
                   parity=parity, monitor=monitor, task=task, detection=det)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec.to_dict(), "labels": list(self.labels),
                "provenance": self.provenance, "parity": self.parity,
                "monitor": self.monitor, "task": self.task,
                "detection": self.detection.to_dict() if self.detection else None}
