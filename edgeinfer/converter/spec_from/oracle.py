"""Pillow oracles for timm and torchvision evaluation transforms, written from their source.

Why an oracle and not the library: timm and torchvision do not import beside the CPU torch
here (docs toolchain), so their transforms cannot be run. These functions follow their
code line by line on PIL images, which is what both evaluate on: timm's
``transforms_imagenet_eval`` (timm/data/transforms_factory.py, huggingface/
pytorch-image-models aa4b5850c1543fa488abf260f18390eda46cf85d) with ``ResizeKeepRatio`` and
``CenterCropOrPad`` (timm/data/transforms.py), and torchvision's ``Resize`` (int: shorter
side, long side ``int(size * long / short)``), ``CenterCrop`` (offset
``int(round(margin / 2.0))``), ``ToTensor`` and ``Normalize`` on the PIL path. A proof
against an oracle says the spec expresses the rules as this code reads them, not that
timm itself was run; the provenance says which.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from edgeinfer.converter.spec_from.common import PIL_CODES

DEFAULT_CROP_PCT = 0.875  # timm.data.constants.DEFAULT_CROP_PCT


def _pil(name: str) -> Any:
    from PIL import Image

    return {"bilinear": Image.Resampling.BILINEAR, "linear": Image.Resampling.BILINEAR,
            "bicubic": Image.Resampling.BICUBIC, "cubic": Image.Resampling.BICUBIC}[name]


def _resize_shorter(img: Any, size: int, resample: Any) -> Any:
    """torchvision F.resize(img, [size]) on a PIL image (_compute_resized_output_size)."""
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    return img.resize((nw, nh), resample)


def _center_crop(img: Any, th: int, tw: int, fill: Any = 0) -> Any:
    """torchvision CenterCrop / timm center_crop_or_pad on a PIL image."""
    from PIL import Image

    w, h = img.size
    if tw > w or th > h:
        left, top = (tw - w) // 2 if tw > w else 0, (th - h) // 2 if th > h else 0
        nw, nh = max(w, tw), max(h, th)
        canvas = Image.new(img.mode, (nw, nh), tuple(fill) if isinstance(fill, list) else fill)
        canvas.paste(img, (left, top))
        img, w, h = canvas, nw, nh
        if (w, h) == (tw, th):
            return img
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return img.crop((left, top, left + tw, top + th))


def _to_tensor(img: Any, mean: Any, std: Any) -> np.ndarray:
    x = np.asarray(img, np.float32).transpose(2, 0, 1) / 255.0  # ToTensor
    m = np.asarray(mean, np.float32).reshape(-1, 1, 1)
    s = np.asarray(std, np.float32).reshape(-1, 1, 1)
    return (x - m) / s  # Normalize


def timm_eval(cfg: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """timm's ``transforms_imagenet_eval`` for a ``pretrained_cfg``: RGB uint8 -> CHW."""
    from PIL import Image

    _, h, w = (int(v) for v in cfg["input_size"])
    crop_pct = float(cfg.get("crop_pct") or DEFAULT_CROP_PCT)
    mode = cfg.get("crop_mode") or "center"
    # resolve_data_config (timm/data/config.py): interpolation 'bicubic' when unset
    resample = _pil(str(cfg.get("interpolation") or "bicubic"))
    scale = (math.floor(h / crop_pct), math.floor(w / crop_pct))
    mean, std = cfg["mean"], cfg["std"]

    def run(rgb: np.ndarray) -> np.ndarray:
        img = Image.fromarray(np.ascontiguousarray(rgb))
        if mode == "squash":
            img = img.resize((scale[1], scale[0]), resample)
            img = _center_crop(img, h, w)
        elif mode == "border":  # ResizeKeepRatio(longest=1) + CenterCropOrPad(fill=mean)
            ih, iw = img.size[1], img.size[0]
            ratio = max(ih / scale[0], iw / scale[1])
            nh, nw = round(ih / ratio), round(iw / ratio)
            img = img.resize((nw, nh), resample)
            img = _center_crop(img, h, w, fill=[round(255 * v) for v in mean])
        else:
            if scale[0] != scale[1]:
                raise ValueError("timm's non-square ResizeKeepRatio path is not in the oracle")
            img = _center_crop(_resize_shorter(img, scale[0], resample), h, w)
        return _to_tensor(img, mean, std)

    return run


def torchvision_steps(steps: list[dict[str, Any]]) -> Callable[[np.ndarray], np.ndarray] | None:
    """torchvision's PIL path for the steps spec_from read (``Derived.read['steps']``);
    None where the oracle would not be honest (a tensor resize without antialiasing)."""
    from PIL import Image

    for s in steps:
        if s["step"] == "Resize" and s.get("antialias") is False:
            return None

    def run(rgb: np.ndarray) -> np.ndarray:
        img: Any = Image.fromarray(np.ascontiguousarray(rgb))
        out: np.ndarray | None = None
        scale = 1.0
        mean: Any = (0.0,)
        std: Any = (1.0,)
        for s in steps:
            name = s["step"]
            if name == "Resize":
                size = s["size"]
                interp = s.get("interpolation") or "bilinear"
                resample = _pil(PIL_CODES[interp] if isinstance(interp, int)
                                else str(interp).lower().replace("inter_", ""))
                if isinstance(size, int) or len(size) == 1:
                    img = _resize_shorter(img, int(size if isinstance(size, int) else size[0]),
                                          resample)
                else:
                    img = img.resize((int(size[1]), int(size[0])), resample)
            elif name == "CenterCrop":
                size = s["size"]
                th, tw = (size, size) if isinstance(size, int) else (
                    (size[0], size[0]) if len(size) == 1 else size)
                img = _center_crop(img, int(th), int(tw))
            elif name in ("ToTensor",) or (name in ("ConvertImageDtype", "ToDtype")
                                           and "float" in str(s.get("dtype"))
                                           and s.get("scale", True)):
                scale = 1 / 255
            elif name == "Normalize":
                mean, std = s["mean"], s["std"]
        x = np.asarray(img, np.float32).transpose(2, 0, 1) * np.float32(scale)
        out = (x - np.asarray(mean, np.float32).reshape(-1, 1, 1)) / np.asarray(
            std, np.float32).reshape(-1, 1, 1)
        return out

    return run
