"""TFLite export: the eval-mode torch module behind the spec's preprocessing, as one .tflite.

The file has two signatures sharing the weights: ``frame`` (uint8 ``[1, H, W, C]`` at the
frame size fixed at conversion; the whole spec runs in the graph) and ``resized`` (float
``[1, h, w, C]`` at ``spec.size`` after the spec's geometric step, which the runtime runs
on the host for frames of other sizes), plus an ``edgeinfer`` metadata entry with the
artifact's props. The frame size is fixed because litert-torch cannot lower a resize whose
size depends on a dynamic input. Quantisation lives in ``tflite_quant.py``. The reasons
and measurements: docs/decisions/tflite.md.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from edgeinfer.artifact import SIG_FRAME, SIG_RESIZED
from edgeinfer.converter.int8.tflite_quant import (
    PREFIX_SCOPE,
    SOFTMAX_SCOPE,
    check_quantize,
    quantize_tflite,
)
from edgeinfer.errors import ConversionError
from edgeinfer.progress import Progress
from edgeinfer.spec import PreprocessSpec
from edgeinfer.spec_torch import PreprocessModule

QUANTIZE = (None, "fp16", "int8")


class _Softmax(nn.Module):
    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.softmax(z, dim=-1)


class ServedModule(nn.Module):
    """prefix (the spec) -> the eval-mode model -> softmax, as ``{"probs": ...}``."""

    def __init__(self, spec: PreprocessSpec, model: nn.Module) -> None:
        super().__init__()
        # antialiased specs: Pillow's uint8 resize as exact index_select/mul/add/floor
        # builtins (spec_torch._pillow_pass); litert-torch cannot lower
        # F.interpolate(antialias=True), and it would not be Pillow's arithmetic anyway
        setattr(self, PREFIX_SCOPE, PreprocessModule(spec, static_resize=True))
        self.model = model
        setattr(self, SOFTMAX_SCOPE, _Softmax())

    def probs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self.model(getattr(self, PREFIX_SCOPE)(x))
        return {"probs": getattr(self, SOFTMAX_SCOPE)(z)}


# litert-torch names a signature's inputs after forward()'s parameters.
class _FrameSignature(ServedModule):
    def forward(self, frame: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.probs(frame)


class _ResizedSignature(ServedModule):
    def forward(self, resized: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.probs(resized)


def resized_spec(spec: PreprocessSpec) -> PreprocessSpec:
    """The spec the ``resized`` signature runs: everything but the geometry.

    Its input already has the model size, so a ``stretch`` to ``spec.size`` is the
    identity and only colour, normalisation and layout remain.
    """
    return replace(spec, resize="stretch", resize_shorter=None, crop_from=None, antialias=False)


def _signatures(module: nn.Module, spec: PreprocessSpec, frame_hw: tuple[int, int]):
    h, w = frame_hw
    c = spec.frame_channels
    frame = _FrameSignature(spec, module).eval()
    resized = _ResizedSignature(resized_spec(spec), module).eval()
    th, tw = spec.size
    return [
        (SIG_FRAME, frame, {SIG_FRAME: torch.zeros(1, h, w, c, dtype=torch.uint8)}),
        (SIG_RESIZED, resized, {SIG_RESIZED: torch.zeros(1, th, tw, c, dtype=torch.float32)}),
    ]


def litert_convert(signatures: Sequence[tuple[str, nn.Module, dict[str, torch.Tensor]]],
                   what: str) -> bytes:
    """The .tflite of ``signatures`` (name, eval-mode module, sample kwargs) through
    litert-torch, its progress bar off and its errors one :class:`ConversionError` naming
    ``what``: the one place the classifier and the detector routes call litert-torch."""
    import litert_torch

    old = os.environ.get("LITERT_TORCH_SHOW_PROGRESS")
    os.environ["LITERT_TORCH_SHOW_PROGRESS"] = "n"
    try:
        conv = litert_torch.Converter()
        for name, mod, kwargs in signatures:
            conv.signature(name, mod, sample_kwargs=kwargs)
        with torch.inference_mode(False), torch.no_grad():
            edge = conv.convert(strict_export=False)
        return bytes(edge.model_content())
    except ConversionError:
        raise
    except Exception as e:  # noqa: BLE001 - torch.export / MLIR / converter errors
        msg = " ".join(str(e).split())[:300] or type(e).__name__
        raise ConversionError(f"litert-torch could not convert {what} to TFLite: "
                              f"{type(e).__name__}: {msg}") from e
    finally:
        if old is None:
            os.environ.pop("LITERT_TORCH_SHOW_PROGRESS", None)
        else:
            os.environ["LITERT_TORCH_SHOW_PROGRESS"] = old


def convert_float(module: nn.Module, spec: PreprocessSpec, frame_hw: tuple[int, int],
                  progress: Progress | None = None) -> bytes:
    """The fp32 .tflite (both signatures, no edgeinfer metadata)."""
    import litert_torch

    say = progress or (lambda _m: None)
    h, w = (int(v) for v in frame_hw)
    if min(h, w) < 1:
        raise ConversionError(f"frame size {frame_hw} must be positive (height, width)")
    module.eval()
    say(f"converting to TFLite with litert-torch {litert_torch.__version__} "
        f"(frame {h}x{w}, batch 1; signatures '{SIG_FRAME}' and '{SIG_RESIZED}')")
    return litert_convert(_signatures(module, spec, (h, w)), "the model")


# ---------------------------------------------------------------------------- entry point
def export_tflite(
    module: nn.Module,
    spec: PreprocessSpec,
    frame_hw: tuple[int, int],
    quantize: str | None,
    calibration: Sequence[np.ndarray],
    progress: Progress | None = None,
    per_channel: bool = True,
) -> bytes:
    """One .tflite model (no metadata yet): uint8 frames of ``frame_hw`` in, probabilities out.

    ``quantize``: ``None`` (fp32), ``"fp16"`` or ``"int8"`` (calibrated on
    ``calibration``, real uint8 frames in the spec's frame colour order). The converter
    embeds the metadata with :func:`embed_metadata` once the parity gate has passed.
    """
    check_quantize(quantize)
    say = progress or (lambda _m: None)
    hw = (int(frame_hw[0]), int(frame_hw[1]))
    return quantize_tflite(convert_float(module, spec, hw, say), spec, hw, quantize,
                           calibration, per_channel, say)
