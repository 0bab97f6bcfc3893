"""The PreprocessSpec as a torch module, so a training pipeline runs exactly what deploys.

It mirrors ``PreprocessSpec.reference`` step for step and is also what the TFLite path
puts in front of the model before conversion (frame sizes are then static, which
``torch.export`` handles because sizes are computed from the tensor shape in Python).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_TORCH_MODE = {"linear": "bilinear", "cubic": "bicubic"}


def _resample(x: torch.Tensor, spec: Any, n_out: int, dim: int) -> torch.Tensor:
    """Antialiased resize along ``dim`` as K gathers and a weighted sum, with the taps of
    ``spec.resample_taps`` baked as constants (the frame size is static when exported).
    litert-torch has no lowering for aten._upsample_*_aa (measured, torch 2.13 /
    litert-torch 0.10), but index_select, mul and add are TFLite builtins; the cost is
    K * n_out * other * C multiply-adds, far below a dense resize matrix."""
    n_in = int(x.shape[dim])
    if n_in == n_out:
        return x
    idx, wgt = spec.resample_taps(n_in, n_out)
    shape = [1, 1, 1, 1]
    shape[dim] = n_out
    out = None
    for j in range(idx.shape[1]):
        term = x.index_select(dim, torch.from_numpy(idx[:, j].copy())) * \
            torch.from_numpy(wgt[:, j].copy()).reshape(shape)
        out = term if out is None else out + term
    return out


class PreprocessModule(nn.Module):
    """uint8 frames [N, H, W, C] (spec.frame_color order) -> float model input.

    ``static_resize``: antialiased resizing through baked taps (:func:`_resample`) instead
    of ``F.interpolate(antialias=True)``, for exporters that lower a fixed frame size
    (the TFLite ``frame`` signature). Both are Pillow's filter; tests hold them together.
    """

    def __init__(self, spec: Any, static_resize: bool = False) -> None:
        # ``spec`` is a PreprocessSpec; not imported here, because spec.py imports this
        # module (lazily, in ``to_torch``) and imports flow one way.
        super().__init__()
        self.spec = spec
        self.static_resize = static_resize
        a, b = spec.affine()
        weight = torch.from_numpy(spec.color_matrix() * a[:, None])
        self.register_buffer("weight", weight, persistent=False)  # (Cm, Cf)
        self.register_buffer("bias", torch.from_numpy(b), persistent=False)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        spec = self.spec
        x = frame.to(torch.float32).permute(0, 3, 1, 2)
        h, w = int(x.shape[2]), int(x.shape[3])
        nh, nw = spec.resized_size(h, w)
        if (nh, nw) != (h, w):
            if spec.antialias and self.static_resize:
                x = _resample(_resample(x, spec, nh, 2), spec, nw, 3)
            else:
                x = F.interpolate(x, size=(nh, nw), mode=_TORCH_MODE[spec.interpolation],
                                  align_corners=False, antialias=spec.antialias)
            if spec.clips_overshoot:
                x = x.clamp(0.0, 255.0)
        th, tw = spec.size
        if spec.crops:
            top, left = spec.crop_offsets(nh, nw)
            x = x[:, :, top:top + th, left:left + tw]
        elif spec.resize == "letterbox":
            top, left = (th - nh) // 2, (tw - nw) // 2
            x = F.pad(x, (left, tw - nw - left, top, th - nh - top), value=spec.pad_value)
        x = torch.einsum("mc,nchw->nmhw", self.weight, x) + self.bias[None, :, None, None]
        if spec.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        return x.contiguous()
