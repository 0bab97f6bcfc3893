"""What every frontend (torch, ONNX, Keras) returns: one :class:`Source`.

Kept apart from the dispatch in ``sources.py`` so frontends import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Source:
    """What a frontend hands to assembly and to the parity gate."""

    name: str  # for messages and reports: "source (torch eval)"
    framework: str  # torch | onnx | keras
    provenance: dict[str, Any]
    make_runner: Callable[[bool], Any]  # apply_softmax -> runner of the framework model
    export: Callable[[], Any]  # -> onnx.ModelProto, input = the spec's model input
    labels: tuple[str, ...] | None = None
    lint_warnings: list[str] = field(default_factory=list)
    module: Any = None  # the eval-mode framework model (torch nn.Module / keras.Model)
    reference: Any = None  # the bundled ReferenceModel, when the source is one
    #: (frame_hw, quantize, calibration frames, progress, per_channel) -> .tflite bytes
    #: without metadata; None when this framework has no TFLite route.
    to_tflite: Callable[..., bytes] | None = None
    #: the spec the artifact bakes in when the frontend lifted preprocessing layers out of
    #: the model into it (Keras Rescaling/Normalization); None: the given spec, unchanged.
    spec: Any = None
