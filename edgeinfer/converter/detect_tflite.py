"""Convert a torch detector to a TFLite detector artifact (issue 28): the classifier's
TFLite contract (``converter/export/tflite_torch.py``) with a detector's outputs.

What the file holds, and why:

* Signature ``frame``: uint8 ``[1, H, W, C]`` at the frame size fixed at conversion
  (default ``DEFAULT_FRAME``, 480x640, a VGA camera); the whole spec (cast, letterbox,
  colour, normalisation) runs in the graph. Signature ``resized``: float32 at the model
  size, a frame after the spec's letterbox run on the host in float (the spec's own
  reference), for frames of any other size. Both write ``boxes [1, A, 4]`` (xyxy, input
  pixels) and ``scores [1, A, C]`` and share the weights. The frame size is fixed for
  the classifier's reason: litert-torch cannot lower a resize whose size depends on a
  dynamic input (docs/decisions/tflite.md).
* NMS and the inverse letterbox run in the lean runtime (``runtime/detect/nms.py``,
  ``geometry.Fit.to_frame``: the ONNX artifact's ``nms="runtime"`` ending), because LiteRT
  has no class-aware NMS (NON_MAX_SUPPRESSION_V4/V5 are single-class) and litert-torch
  could not take the framework's own torch NMS (``net.postprocess``: torch.export stops at
  its data-dependent sizes, GuardOnDataDependentSymNode). The ONNX measurement
  (docs/detection/own_detector.md) showed the two endings agree exactly.
* The ``edgeinfer`` metadata entry carries the same props as the ONNX artifact
  (``edgeinfer.task = "detect"``, the DetectionSpec), so ``info``, ``predict``, ``serve``,
  ``watch`` and ``bench`` read it through ``runtime.detect.loader.open_detector``.

The gate is the ONNX detector's (``detect_gate.detection_gate``): the prefix output is
read from the interpreter (``parity.prefix.tflite_prefix_tensors``; the prefix sits under
the classifier's ``PREFIX_SCOPE``), the model on identical tensors, then the detections
served by ``ArtifactDetector`` vs the torch pipeline.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from edgeinfer.artifact import SIG_FRAME, SIG_RESIZED
from edgeinfer.converter.export.tflite_torch import litert_convert, resized_spec
from edgeinfer.converter.int8.tflite_quant import PREFIX_SCOPE
from edgeinfer.errors import ConversionError, ModelError
from edgeinfer.progress import Progress
from edgeinfer.spec import PreprocessSpec
from edgeinfer.spec_torch import PreprocessModule

#: the ``frame`` signature's size when none is given: a VGA camera frame (and the size of
#: some landscape parity frames, so the gate runs both signatures)
DEFAULT_FRAME = (480, 640)


class _Served(nn.Module):
    """prefix (the spec, under ``PREFIX_SCOPE``) -> the detector -> boxes, scores."""

    def __init__(self, spec: PreprocessSpec, model: nn.Module) -> None:
        super().__init__()
        setattr(self, PREFIX_SCOPE, PreprocessModule(spec, static_resize=True))
        self.model = model

    def detect(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        boxes, scores = self.model(getattr(self, PREFIX_SCOPE)(x))
        return {"boxes": boxes, "scores": scores}


# The class names are tflite_quant's _SIGNATURES: its int8 layer candidates name both
# signatures' op at once through them. litert-torch names inputs after forward()'s.
class _FrameSignature(_Served):
    def forward(self, frame: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.detect(frame)


class _ResizedSignature(_Served):
    def forward(self, resized: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.detect(resized)


def build_tflite(module: nn.Module, spec: PreprocessSpec, frame_hw: tuple[int, int],
                 say: Progress) -> bytes:
    """The float .tflite (both signatures, no metadata) of an eval-mode detector."""
    import litert_torch

    h, w = (int(v) for v in frame_hw)
    if min(h, w) < 1:
        raise ConversionError(f"frame size {frame_hw} must be positive (height, width)")
    c = spec.frame_channels
    th, tw = spec.size
    say(f"converting to TFLite with litert-torch {litert_torch.__version__} (frame {h}x{w}; "
        f"signatures '{SIG_FRAME}' and '{SIG_RESIZED}'; NMS in the runtime)")
    return litert_convert([
        (SIG_FRAME, _FrameSignature(spec, module).eval(),
         {SIG_FRAME: torch.zeros(1, h, w, c, dtype=torch.uint8)}),
        (SIG_RESIZED, _ResizedSignature(resized_spec(spec), module).eval(),
         {SIG_RESIZED: torch.zeros(1, th, tw, c)}),
    ], "the detector")


def tflite_stages(blob: bytes, src: Any, frames: Sequence[Any]) -> dict[str, Any]:
    """Preprocessing in grey levels and the model on identical tensors, read from the
    .tflite as it deploys (frames of the fixed size through ``frame``, others through the
    host letterbox and ``resized``): ``detect_gate.model_stages`` for TFLite."""
    from edgeinfer.parity.prefix import TflitePrefixRunner, tflite_prefix_tensors
    from edgeinfer.parity.stages import grey_levels

    where = tflite_prefix_tensors(blob)
    if not {SIG_FRAME, SIG_RESIZED} <= set(where):
        raise ModelError("the TFLite detector's prefix output cannot be found in "
                         f"{sorted(where)}: its stages cannot be measured")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        r = TflitePrefixRunner(blob, src.spec, where, threads=1)
    grey, box, score = 0.0, 0.0, 0.0
    for f in frames:
        x = f.image if f.image.ndim == 3 else f.image[..., None]
        if tuple(x.shape[:2]) == r.frame_size:
            out, sig = r.frame(**{SIG_FRAME: x[None]}), SIG_FRAME
        else:
            out, sig = r.resized(**{SIG_RESIZED: r.geometry(x)}), SIG_RESIZED
        px = r._pixels(sig)  # noqa: SLF001 - the prefix output of this very call
        ref = src.spec.reference(f.image)
        grey = max(grey, float(grey_levels(px.astype(np.float64) - ref, src.spec).max()))
        with torch.inference_mode():
            t_boxes, t_scores = src.module(torch.from_numpy(np.ascontiguousarray(px)))
        box = max(box, float(np.abs(t_boxes.double().numpy() - out["boxes"]).max()))
        score = max(score, float(np.abs(t_scores.double().numpy() - out["scores"]).max()))
    return {"preprocessing_grey_levels": grey, "model_box_error_px": box,
            "model_score_error": score, "frames": len(frames)}

