"""What every spec derivation shares: the result type, resample codes per framework, refusals.

Resample codes are read per framework because the same integer means different filters:
PIL's 1 is Lanczos, OpenCV's 1 is bilinear. A step the spec cannot express is refused
with one line that names the step (``SpecError``, exit 2 on the CLI): a spec that is
almost what training did is the bug this package exists to remove.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgeinfer.detect_spec import DetectionSpec
from edgeinfer.errors import SpecError
from edgeinfer.spec import PreprocessSpec

# PIL.Image.Resampling: NEAREST 0, LANCZOS 1, BILINEAR 2, BICUBIC 3, BOX 4, HAMMING 5.
PIL_CODES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
# cv2.INTER_*: NEAREST 0, LINEAR 1, CUBIC 2, AREA 3, LANCZOS4 4.
CV2_CODES = {0: "nearest", 1: "bilinear", 2: "bicubic", 3: "area", 4: "lanczos"}
_EXPRESSIBLE = {"bilinear": "linear", "linear": "linear", "bicubic": "cubic",
                "cubic": "cubic"}


@dataclass(frozen=True)
class Derived:
    """A spec derived from a training pipeline, with what it was read from (provenance)."""

    spec: PreprocessSpec
    source: str  # the kind: hf, timm, torchvision, albumentations, keras, spec
    read: dict[str, Any] = field(default_factory=dict)  # the fields that decided it
    notes: tuple[str, ...] = ()  # what is inevitable (rounding, ...) and was accepted
    # How the spec was proven against the pipeline's own output (spec_from/proof.py):
    # library, class, frames, max/mean grey levels; or the evidence it was accepted on.
    proof: dict[str, Any] | None = None
    # The pipeline itself (a processor, a Compose, a model, a config), kept to re-prove the
    # spec on the user's own frames; never serialised.
    pipeline: Any = field(default=None, compare=False, repr=False)
    # A detector's fit, box decoder and suppression (spec_from/detection.py), else None.
    detection: DetectionSpec | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"source": self.source, "read": self.read, "notes": list(self.notes),
               "spec": self.spec.to_dict(), "proof": self.proof}
        if self.detection is not None:
            out["detection"] = self.detection.to_dict()
        return out


def refuse(step: str, why: str) -> SpecError:
    """The one-line refusal for a step the spec cannot express."""
    return SpecError(f"cannot derive a spec: {step}: {why}")


def interpolation(value: Any, codes: dict[int, str], step: str) -> str:
    """The spec's interpolation for a framework's resample value (int code, enum or name).

    ``codes`` is the framework's integer table (PIL_CODES or CV2_CODES); enums are read by
    their name or value (torchvision's InterpolationMode, HF's PILImageResampling).
    """
    name: Any = value
    if hasattr(value, "value") and isinstance(value.value, str):  # torchvision enum
        name = value.value
    elif isinstance(value, int) and not isinstance(value, bool):  # IntEnum included
        if int(value) not in codes:
            raise refuse(step, f"resample code {int(value)} is unknown")
        name = codes[int(value)]
    elif hasattr(value, "name"):
        name = value.name
    name = str(name).lower().replace("inter_", "")
    if name not in _EXPRESSIBLE:
        raise refuse(step, f"{name} resampling cannot be expressed (the spec has bilinear "
                           "and bicubic); retrain or evaluate with one of those")
    return _EXPRESSIBLE[name]


def hw(value: Any, step: str) -> tuple[int, int]:
    """(height, width) from an int, a [h, w] list or a {'height', 'width'} dict."""
    if value is None:
        raise refuse(step, "missing: the processor class's own default would apply, which a "
                     "config file alone does not say; add it to the config or pass --spec")
    if isinstance(value, dict):
        if "height" in value and "width" in value:
            return int(value["height"]), int(value["width"])
        raise refuse(step, f"size {value} has no height/width")
    if isinstance(value, (int, float)):
        return int(value), int(value)
    seq = list(value)
    if len(seq) == 1:
        return int(seq[0]), int(seq[0])
    if len(seq) == 2:
        return int(seq[0]), int(seq[1])
    raise refuse(step, f"size {value} is not an int or (height, width)")


def floats(value: Any) -> tuple[float, ...]:
    if isinstance(value, (int, float)):
        return (float(value),)
    return tuple(float(v) for v in (value.tolist() if hasattr(value, "tolist") else value))
