"""The PreprocessSpec as a torch module, so a training pipeline runs exactly what deploys.

It mirrors ``PreprocessSpec.reference`` step for step (antialiased resizing is Pillow's
uint8 arithmetic, bit for bit, as in resample.py) and is also what the TFLite path
puts in front of the model before conversion (frame sizes are then static, which
``torch.export`` handles because sizes are computed from the tensor shape in Python).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edgeinfer.resample import (
    PRECISION_BITS,
    pillow_coefficients,
    split_coefficients,
    vertical_first,
)

_TORCH_MODE = {"linear": "bilinear", "cubic": "bicubic"}


def _pillow_pass(x: torch.Tensor, interp: str, n_out: int, dim: int) -> torch.Tensor:
    """Pillow's 8-bit resampling along ``dim`` (resample.py), bit for bit: K gathers, each
    multiplied by the three 8-bit digits of Pillow's fixed-point weights and summed, then
    Pillow's rounding carried through the digits. Every value is an integer below 2**24,
    so float32 is exact on any device and in any order.

    Not ``F.interpolate(antialias=True)``: torch's own uint8 resize is up to 2 grey levels
    from Pillow and its float one rounds nothing (5.6-22 grey levels, docs/resize_pillow.md).
    The taps are constants once the frame size is fixed, and index_select, mul, add and
    floor are TFLite builtins, so the same code exports (litert-torch has no lowering for
    aten._upsample_*_aa)."""
    n_in = int(x.shape[dim])
    if n_in == n_out:
        return x
    idx, coef = pillow_coefficients(n_in, n_out, interp)
    digits = torch.from_numpy(split_coefficients(coef)).to(x.device)  # (n_out, K, 3)
    index = torch.from_numpy(idx.copy()).to(x.device)
    shape = [1] * x.dim()
    shape[dim] = n_out
    sums: list[torch.Tensor] = []
    for j in range(idx.shape[1]):
        tap = x.index_select(dim, index[:, j])
        terms = [tap * digits[:, j, i].reshape(shape) for i in range(3)]
        sums = terms if not sums else [a + t for a, t in zip(sums, terms, strict=True)]
    s2, s1, s0 = sums
    c0 = torch.floor((s0 + float(1 << (PRECISION_BITS - 1))) / 256.0)
    c1 = torch.floor((s1 + c0) / 256.0)
    return torch.floor((s2 + c1) / float(1 << (PRECISION_BITS - 16))).clamp(0.0, 255.0)


def _pillow_resize(x: torch.Tensor, interp: str, nh: int, nw: int) -> torch.Tensor:
    """NCHW float of uint8 values -> Pillow's uint8 resize, in Pillow's pass order."""
    if vertical_first(int(x.shape[2]), int(x.shape[3]), nh, nw):
        return _pillow_pass(_pillow_pass(x, interp, nh, 2), interp, nw, 3)
    return _pillow_pass(_pillow_pass(x, interp, nw, 3), interp, nh, 2)


class PreprocessModule(nn.Module):
    """uint8 frames [N, H, W, C] (spec.frame_color order) -> float model input.

    Antialiased specs resize as Pillow does (:func:`_pillow_resize`), bit for bit, eagerly
    and when exported. ``static_resize`` (asked for by the TFLite ``frame`` signature) no
    longer changes anything: it chose baked float taps over ``F.interpolate(antialias=True)``
    before issue 25; both are now the same exact integer code.
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
            if spec.antialias:
                if frame.dtype != torch.uint8:  # Pillow resizes 8-bit images
                    x = torch.floor(x + 0.5).clamp(0.0, 255.0)
                x = _pillow_resize(x.contiguous(), spec.interpolation, nh, nw)
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
