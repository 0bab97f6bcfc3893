"""What a detector artifact says about its boxes (issue 28): how a frame is placed in the
input, how the raw outputs become boxes, and the suppression that prunes them.

The contract exists so the runtime and the framework cannot disagree about the steps that
silently move boxes after export (ultralytics #26269: letterbox in one, stretch in the
other). The pixel side (colour order, resampling, ``scale``/``mean``/``std``) stays in the
:class:`~edgeinfer.spec.PreprocessSpec`; this object holds only what detection adds:

* ``fit``: ``letterbox`` (resize keeping the aspect, then pad centred: Ultralytics, D-FINE),
  ``pad_resize`` (pad the frame to the input's aspect, then resize: MediaPipe's BlazeFace),
  ``stretch`` (each axis on its own).
* ``decoder``: ``{"kind": "ssd", ...}`` MediaPipe's SSD anchors (``strides``,
  ``anchor_offset``, ``interpolated_scale_aspect_ratio``, ``box_scale``,
  ``raw_score_limit``) or ``{"kind": "boxes", "box_format": "xyxy" | "cxcywh",
  "normalized": bool}`` for a graph that already writes boxes.
* ``nms``: ``iou_threshold``, ``score_threshold``, ``top_k`` (None: all), ``class_aware``
  and ``weighted`` (MediaPipe's weighted merge of the suppressed boxes).

Stored as JSON under ``edgeinfer.detection`` next to ``edgeinfer.task = "detect"``; a
damaged value is a :class:`~edgeinfer.errors.ModelError` like every other key.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from edgeinfer.errors import ModelError

TASKS = ("classify", "detect")
FITS = ("letterbox", "pad_resize", "stretch")
DECODERS = ("ssd", "boxes")
BOX_FORMATS = ("xyxy", "cxcywh")
_SSD_KEYS = {"strides": list, "anchor_offset": list, "interpolated_scale_aspect_ratio": float,
             "box_scale": float, "raw_score_limit": float, "keypoints": int}


@dataclass(frozen=True)
class NmsSpec:
    iou_threshold: float = 0.5
    score_threshold: float = 0.25
    top_k: int | None = 100
    class_aware: bool = True
    weighted: bool = False


@dataclass(frozen=True)
class DetectionSpec:
    fit: str = "letterbox"
    decoder: dict[str, Any] = field(default_factory=lambda: {"kind": "boxes",
                                                             "box_format": "xyxy",
                                                             "normalized": False})
    nms: NmsSpec = field(default_factory=NmsSpec)

    def __post_init__(self) -> None:
        if self.fit not in FITS:
            raise ValueError(f"detection.fit={self.fit!r} is not one of {', '.join(FITS)}")
        d = self.decoder
        if not isinstance(d, dict) or d.get("kind") not in DECODERS:
            raise ValueError(f"detection.decoder must be an object with kind in "
                             f"{', '.join(DECODERS)}, got {d!r}"[:200])
        if d["kind"] == "boxes" and d.get("box_format") not in BOX_FORMATS:
            raise ValueError(f"detection.decoder.box_format must be one of "
                             f"{', '.join(BOX_FORMATS)}")
        if d["kind"] == "ssd":
            for key, kind in _SSD_KEYS.items():
                if not isinstance(d.get(key), (kind, int) if kind is float else kind) \
                        or isinstance(d.get(key), bool):
                    raise ValueError(f"detection.decoder.{key} must be a {kind.__name__}")
            if not d["strides"] or not all(isinstance(s, int) and s > 0 for s in d["strides"]):
                raise ValueError("detection.decoder.strides must be positive integers")
        n = self.nms
        if isinstance(n, dict):
            object.__setattr__(self, "nms", n := NmsSpec(**n))
        for name in ("iou_threshold", "score_threshold"):
            v = getattr(n, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise ValueError(f"detection.nms.{name} must be a number in 0..1, got {v!r}")
        if n.top_k is not None and (isinstance(n.top_k, bool) or not isinstance(n.top_k, int)
                                    or n.top_k < 1):
            raise ValueError(f"detection.nms.top_k must be a positive integer or null, "
                             f"got {n.top_k!r}")
        if not isinstance(n.class_aware, bool) or not isinstance(n.weighted, bool):
            raise ValueError("detection.nms.class_aware and .weighted must be true or false")

    def to_dict(self) -> dict[str, Any]:
        return {"fit": self.fit, "decoder": dict(self.decoder), "nms": asdict(self.nms)}

    def describe(self) -> str:
        """One line for ``info``: the fit, the decoder and the suppression."""
        n, d = self.nms, self.decoder
        dec = (f"SSD anchors (strides {d['strides']})" if d["kind"] == "ssd"
               else f"boxes {d['box_format']}{' normalised' if d.get('normalized') else ''}")
        return (f"fit {self.fit}, {dec}, {'weighted ' if n.weighted else ''}NMS "
                f"{'per class' if n.class_aware else 'across classes'} IoU "
                f"{n.iou_threshold:g} score > {n.score_threshold:g} top-k "
                f"{n.top_k if n.top_k is not None else 'all'}")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any, source: str = "detection settings") -> DetectionSpec:
        """Validated settings; anything damaged is a one-line ModelError naming the field."""
        try:
            if not isinstance(d, dict):
                raise ValueError(f"must be a JSON object, got {type(d).__name__}")
            unknown = set(d) - {"fit", "decoder", "nms"}
            if unknown:
                raise ValueError(f"unknown field(s) {', '.join(sorted(unknown))}")
            nms = d.get("nms", {})
            if not isinstance(nms, dict):
                raise ValueError("detection.nms must be a JSON object")
            return cls(fit=d.get("fit", "letterbox"), decoder=d.get("decoder", cls().decoder),
                       nms=NmsSpec(**nms))
        except (TypeError, ValueError) as e:
            raise ModelError(f"{source} are damaged: {' '.join(str(e).split())[:200]}") from None


def parse_task(value: Any, detection: Any, source: str) -> tuple[str, DetectionSpec | None]:
    """(task, detection spec) from the stored values; a detector without settings, settings
    on a classifier, or an unknown task are damaged metadata."""
    task = "classify" if value is None else value
    if task not in TASKS:
        raise ModelError(f"{source} has an unknown task {task!r}; this edgeinfer serves "
                         f"{', '.join(TASKS)}")
    if task == "classify":
        if detection is not None:
            raise ModelError(f"{source} has detection settings but task 'classify'")
        return task, None
    if detection is None:
        raise ModelError(f"{source} is a detector without detection settings")
    return task, DetectionSpec.from_dict(detection, f"{source}'s detection settings")


def task_line(task: str, detection: DetectionSpec | None) -> str:
    """``info``'s task line: ``classify``, or ``detect (fit ..., decoder, NMS ...)``."""
    return task if detection is None else f"{task} ({detection.describe()})"
