"""The spec from a timm model or its ``pretrained_cfg`` dict (timm's evaluation transform).

timm's ``transforms_imagenet_eval`` (timm/data/transforms_factory.py) is followed rule by
rule: ``scale_size = floor(img_size / crop_pct)``; crop_mode ``center`` resizes the shorter
side with torchvision's ``Resize(int)`` (long side floored) and centre-crops with
torchvision's ``CenterCrop`` (odd margins rounded half to even); ``squash`` stretches;
``border`` fits the longer side and pads with the mean colour. timm evaluates on PIL
images, so resizing is Pillow's (antialiased; bicubic with a = -0.5). timm itself is not
imported (its wheel needs a CUDA-linked torchvision here): a model is read through its
``pretrained_cfg`` attribute.
"""

from __future__ import annotations

import math
from typing import Any

from edgeinfer.converter.spec_from.common import Derived, floats, refuse
from edgeinfer.spec import PreprocessSpec

DEFAULT_CROP_PCT = 0.875  # timm.data.constants.DEFAULT_CROP_PCT
READ = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


def is_timm_config(d: dict) -> bool:
    return "input_size" in d and "mean" in d and "std" in d


def config_of(model: Any) -> dict[str, Any] | None:
    """A timm model's evaluation config (``pretrained_cfg``, older ``default_cfg``)."""
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        if isinstance(cfg, dict) and is_timm_config(cfg):
            return cfg
    return None


def derive(cfg: dict[str, Any], frame_color: str = "BGR", layout: str = "NCHW") -> Derived:
    step = "timm pretrained_cfg"
    size = cfg["input_size"]
    if not isinstance(size, (list, tuple)) or len(size) != 3:
        raise refuse(f"{step} input_size={size!r}", "must be [channels, height, width]")
    c, h, w = (int(v) for v in size)
    if c != 3:
        raise refuse(f"{step} input_size={list(cfg['input_size'])}", "only 3-channel "
                     "timm models are read")
    # timm/data/config.py resolve_data_config: 'bicubic' where the cfg names none
    interp = str(cfg.get("interpolation") or "bicubic")
    if interp not in ("bilinear", "bicubic"):
        raise refuse(f"{step} interpolation={interp!r}", "only bilinear and bicubic can be "
                     "expressed")
    crop_pct = float(cfg.get("crop_pct") or DEFAULT_CROP_PCT)
    mode = cfg.get("crop_mode") or "center"
    if cfg.get("crop_border_pixels"):
        raise refuse(f"{step} crop_border_pixels={cfg['crop_border_pixels']}",
                     "TrimBorder cannot be expressed")
    if crop_pct > 1.0:
        raise refuse(f"{step} crop_pct={crop_pct}", "a crop larger than the image pads, "
                     "which the spec cannot express")
    scale_h, scale_w = math.floor(h / crop_pct), math.floor(w / crop_pct)
    mean, std = floats(cfg["mean"]), floats(cfg["std"])
    common = dict(size=(h, w), interpolation="linear" if interp == "bilinear" else "cubic",
                  antialias=True, frame_color=frame_color, model_color="RGB",
                  scale=1 / 255, mean=mean, std=std, layout=layout)
    notes = ["Pillow resizes uint8 images and rounds after each pass: up to 1 grey level "
             "(bicubic: overshoot clipped between passes, rarely more)"]
    if mode == "squash":  # Resize((scale_h, scale_w)) + CenterCrop(input_size)
        spec = (PreprocessSpec(resize="stretch", **common) if crop_pct == 1.0 else
                PreprocessSpec(resize="stretch_crop", crop_from=(scale_h, scale_w),
                               crop_rounding="half_even", **common))
    elif mode == "border":
        fill = [round(255 * v) for v in mean]
        if crop_pct != 1.0 or len(set(fill)) != 1:
            raise refuse(f"{step} crop_mode='border'", f"the letterbox is filled with the "
                         f"mean colour {fill} (per channel) and crop_pct={crop_pct}; the spec "
                         "pads with one grey value and crop_pct 1")
        spec = PreprocessSpec(resize="letterbox", pad_value=float(fill[0]), **common)
        notes.append("timm's ResizeKeepRatio rounds half to even, the spec half up")
    elif mode == "center":
        if scale_h != scale_w:
            raise refuse(f"{step} crop_mode='center' with input_size {h}x{w}",
                         "timm's non-square ResizeKeepRatio path is not read")
        spec = PreprocessSpec(resize="shorter_crop", resize_shorter=scale_h,
                              size_rounding="floor", crop_rounding="half_even", **common)
    else:
        raise refuse(f"{step} crop_mode={mode!r}", "unknown crop mode")
    read = {k: (list(cfg[k]) if isinstance(cfg[k], tuple) else cfg[k])
            for k in READ if k in cfg}
    return Derived(spec, "timm", read, tuple(notes))
