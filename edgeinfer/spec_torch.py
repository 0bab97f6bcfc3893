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


class PreprocessModule(nn.Module):
    """uint8 frames [N, H, W, C] (spec.frame_color order) -> float model input."""

    def __init__(self, spec: Any) -> None:
        # ``spec`` is a PreprocessSpec; not imported here, because spec.py imports this
        # module (lazily, in ``to_torch``) and imports flow one way.
        super().__init__()
        self.spec = spec
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
            x = F.interpolate(x, size=(nh, nw), mode=_TORCH_MODE[spec.interpolation],
                              align_corners=False, antialias=spec.antialias)
            if spec.clips_overshoot:
                x = x.clamp(0.0, 255.0)
        th, tw = spec.size
        if spec.resize == "shorter_crop":
            top, left = spec.crop_offsets(nh, nw)
            x = x[:, :, top:top + th, left:left + tw]
        elif spec.resize == "letterbox":
            top, left = (th - nh) // 2, (tw - nw) // 2
            x = F.pad(x, (left, tw - nw - left, top, th - nh - top), value=spec.pad_value)
        x = torch.einsum("mc,nchw->nmhw", self.weight, x) + self.bias[None, :, None, None]
        if spec.layout == "NHWC":
            x = x.permute(0, 2, 3, 1)
        return x.contiguous()
