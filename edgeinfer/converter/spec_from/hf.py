"""The spec from a Hugging Face image processor or its ``preprocessor_config.json``.

Read with the processors' own rules (transformers 5, PIL backend): ``size`` is
``{height, width}`` (stretch) or ``{shortest_edge}`` (keep the aspect, the long side
``int(short * long / short)``, i.e. floored), the centre crop's offset is floored, PIL
resamples with antialiasing, ``rescale_factor`` scales and ``image_mean/std`` normalise.
Two processors have their own rules, both implemented here:

* ConvNext: ``shortest_edge < 384`` resizes the shorter side to
  ``int(shortest_edge / crop_pct)`` and crops ``shortest_edge`` square; otherwise it
  stretches to ``shortest_edge`` square (no crop).
* EfficientNet: ``rescale_offset`` maps to ``x * rescale_factor - 1`` and ``include_top``
  divides by ``image_std`` once more.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from edgeinfer.converter.spec_from.common import (
    PIL_CODES,
    Derived,
    floats,
    hw,
    interpolation,
    refuse,
)
from edgeinfer.spec import PreprocessSpec

READ = ("image_processor_type", "do_resize", "size", "resample", "do_center_crop",
        "crop_size", "crop_pct", "do_rescale", "rescale_factor", "rescale_offset",
        "do_normalize", "image_mean", "image_std", "include_top", "do_convert_rgb")


def is_hf_config(d: dict) -> bool:
    return ("image_processor_type" in d or "feature_extractor_type" in d
            or {"do_resize", "image_mean"} <= set(d))


def config_of(processor: Any) -> dict[str, Any]:
    """The processor's configuration, as its ``preprocessor_config.json`` would hold it."""
    d = dict(processor.to_dict())
    d.setdefault("image_processor_type", type(processor).__name__)
    return d


def derive(cfg: dict[str, Any], frame_color: str = "BGR", layout: str = "NCHW",
           check_task: bool = True) -> Derived:
    """The spec as the config's numbers say (``check_task=False``: without refusing other
    tasks' processors first; tools/spec_from_table.py measures what that gave)."""
    kind = str(cfg.get("image_processor_type") or cfg.get("feature_extractor_type") or "")
    base = kind.removesuffix("Fast").removesuffix("Pil")
    step = f"Hugging Face {base or 'image processor'}"
    from edgeinfer.converter.spec_from.proof import refuse_other_task

    if check_task:
        refuse_other_task(kind)  # detection, OCR, keypoints, depth, ...: by class, first
    for flag in ("do_pad", "do_reduce_labels", "do_flip_channel_order"):
        if cfg.get(flag):
            raise refuse(f"{step} {flag}=True", "not an expressible classification step")
    if not cfg.get("do_resize", True):
        raise refuse(f"{step} do_resize=False", "the model input then has the frame's size; "
                     "the spec needs a fixed model size")
    size = cfg.get("size") or {}
    interp = interpolation(cfg.get("resample", 2), PIL_CODES, f"{step} resample")
    crop = bool(cfg.get("do_center_crop", False))
    notes = ["Pillow resizes uint8 images and rounds after each pass: up to 1 grey level "
             "(bicubic: overshoot clipped between passes, rarely more)"]
    if isinstance(size, int):
        size = {"shortest_edge": size}
    if base.startswith("ConvNext"):
        s = int(size.get("shortest_edge", 384))
        if s < 384:
            shorter = int(s / float(cfg.get("crop_pct", 224 / 256)))
            spec = PreprocessSpec(size=(s, s), resize="shorter_crop", resize_shorter=shorter,
                                  size_rounding="floor")
        else:
            spec = PreprocessSpec(size=(s, s))
        crop = False  # ConvNext's crop is part of its resize rule
    elif "shortest_edge" in size:
        if "longest_edge" in size:
            raise refuse(f"{step} size {size}", "shortest/longest-edge resizing gives a "
                         "frame-dependent model size")
        s = int(size["shortest_edge"])
        if not crop:
            raise refuse(f"{step} size {size} without do_center_crop",
                         "the model input then has a frame-dependent size")
        spec = PreprocessSpec(size=hw(cfg.get("crop_size"), f"{step} crop_size"),
                              resize="shorter_crop", resize_shorter=s, size_rounding="floor")
        crop = False
    else:
        if "crop_pct" in cfg and cfg["crop_pct"] not in (None, 1, 1.0):
            raise refuse(f"{step} crop_pct={cfg['crop_pct']}", "this processor's crop_pct "
                         "rule is not known to edgeinfer")
        spec = PreprocessSpec(size=hw(size, f"{step} size"))
        cropped = hw(cfg.get("crop_size"), f"{step} crop_size") if crop else spec.size
        if cropped != spec.size:  # DeiT: stretched to 256x256, then the centre 224x224
            if min(spec.size[0] - cropped[0], spec.size[1] - cropped[1]) < 0:
                raise refuse(f"{step} crop_size={cfg.get('crop_size')} larger than size="
                             f"{size}", "a crop before the resize (or a pad) cannot be "
                             "expressed")
            spec = PreprocessSpec(size=cropped, resize="stretch_crop", crop_from=spec.size)
    scale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    offset = 1.0 if cfg.get("rescale_offset") else 0.0  # x * scale - 1
    mean, std = (0.0,), (1.0,)
    if cfg.get("do_normalize", True):
        mean, std = floats(cfg.get("image_mean", (0.5,))), floats(cfg.get("image_std", (0.5,)))
    mean = tuple(m + offset for m in mean)
    if base.startswith("EfficientNet") and cfg.get("include_top", True) and \
            cfg.get("do_normalize", True):
        # include_top: normalize(image, mean=0, std=image_std) once more
        std = tuple(a * b for a, b in zip(_bcast(std, 3), _bcast(
            floats(cfg.get("image_std", (0.5,))), 3), strict=True))
        mean = _bcast(mean, 3)
    spec = replace(spec, interpolation=interp, antialias=True, frame_color=frame_color,
                   model_color="RGB", scale=scale, mean=mean, std=std, layout=layout)
    read = {k: _plain(cfg[k]) for k in READ if k in cfg}
    return Derived(spec, "hf", read, tuple(notes))


def _bcast(v: tuple[float, ...], n: int) -> tuple[float, ...]:
    return v * n if len(v) == 1 else v


def _plain(v: Any) -> Any:
    if hasattr(v, "value") and not isinstance(v, (int, float, str)):
        return v.value
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return int(v) if isinstance(v, int) and not isinstance(v, bool) else v
