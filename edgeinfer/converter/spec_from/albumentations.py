"""The spec from an albumentations ``Compose`` or its ``A.to_dict`` JSON.

albumentations resizes with OpenCV (codes are ``cv2.INTER_*``: 1 is bilinear here, not
Lanczos as in PIL), without antialiasing, on uint8 images. Sizes follow its own code
(2.0.8, MaxSizeTransform.apply): ``SmallestMaxSize``/``LongestMaxSize`` give
``round(side * max_size / ref)`` (the spec's half_up except at exact float ties, where
Python rounds to even), ``CenterCrop`` and ``PadIfNeeded`` offsets are floored. Every step must run
with ``p=1``: a random step cannot be baked into a deterministic artifact.
"""

from __future__ import annotations

from typing import Any

from edgeinfer.converter.spec_from.common import CV2_CODES, Derived, floats, interpolation, refuse
from edgeinfer.spec import PreprocessSpec


def is_albumentations_dict(d: dict) -> bool:
    t = d.get("transform")
    return isinstance(t, dict) and "__class_fullname__" in t


def is_albumentations(obj: Any) -> bool:
    return type(obj).__module__.startswith("albumentations") and \
        type(obj).__name__ == "Compose"


def to_dict(obj: Any) -> dict[str, Any]:
    import albumentations as A

    return A.to_dict(obj)


def derive(d: dict[str, Any], frame_color: str = "BGR", layout: str = "NCHW") -> Derived:
    top = d["transform"]
    steps = top.get("transforms", [])
    size: tuple[int, int] | None = None
    kind, shorter, longest, pad = "stretch", None, None, 0.0
    interp = "linear"
    scale, mean, std = 1.0, (0.0,), (1.0,)
    read = []
    for t in steps:
        name = str(t.get("__class_fullname__", "?")).rsplit(".", 1)[-1]
        step = f"albumentations {name}"
        read.append({k: v for k, v in t.items() if k not in ("mask_interpolation",
                                                              "fill_mask")})
        if float(t.get("p", 1.0)) < 1.0:
            raise refuse(f"{step}(p={t['p']})", "a random step cannot be baked into the "
                         "artifact")
        if name in ("Resize", "SmallestMaxSize", "LongestMaxSize"):
            if t.get("area_for_downscale"):
                raise refuse(f"{step} area_for_downscale", "INTER_AREA cannot be expressed")
            interp = interpolation(t.get("interpolation", 1), CV2_CODES, step)
        if name == "Resize":
            size = (int(t["height"]), int(t["width"]))
        elif name == "SmallestMaxSize":
            shorter = _one_size(t, step)
            kind = "shorter_crop"
        elif name == "LongestMaxSize":
            longest = _one_size(t, step)
            kind = "letterbox"
        elif name == "CenterCrop":
            crop = (int(t["height"]), int(t["width"]))
            if kind != "shorter_crop" and crop != size:
                raise refuse(step, "a crop must follow SmallestMaxSize")
            size = crop
        elif name == "PadIfNeeded":
            if kind != "letterbox" or (t.get("min_height"), t.get("min_width")) != \
                    (longest, longest) or t.get("position", "center") != "center" or \
                    int(t.get("border_mode", 0)) != 0:
                raise refuse(step, "only a centred constant pad to LongestMaxSize's square "
                             "(a letterbox) can be expressed")
            fill = floats(t.get("fill", t.get("value", 0.0)) or 0.0)
            if len(set(fill)) != 1:
                raise refuse(f"{step} fill={list(fill)}", "the spec pads with one value")
            pad, size = fill[0], (longest, longest)
        elif name == "Normalize":
            if t.get("normalization", "standard") != "standard":
                raise refuse(f"{step} normalization={t['normalization']!r}", "per-image "
                             "normalisation cannot be expressed")
            mpv = float(t.get("max_pixel_value") or 255.0)
            scale, mean, std = 1.0 / mpv, floats(t["mean"]), floats(t["std"])
        elif name == "ToFloat":
            scale = 1.0 / float(t.get("max_value") or 255.0)
        elif name == "ToTensorV2":
            pass
        else:
            raise refuse(step, "only Resize, SmallestMaxSize(+CenterCrop), LongestMaxSize"
                         "(+PadIfNeeded), Normalize, ToFloat and ToTensorV2 can be expressed")
    if size is None:
        raise refuse("albumentations Compose", "no step fixes the model input size")
    spec = PreprocessSpec(size=size, resize=kind, resize_shorter=shorter,
                          interpolation=interp, antialias=False, frame_color=frame_color,
                          model_color="RGB", scale=scale, mean=mean, std=std, layout=layout,
                          pad_value=pad)
    notes = ("albumentations resizes uint8 frames with OpenCV's fixed-point resize: up to "
             "~1 grey level from the spec's float resize", "albumentations rounds sizes "
             "in float (halves to even); the spec in exact integers (halves up)")
    return Derived(spec, "albumentations", {"version": d.get("__version__"),
                                            "steps": read}, notes)


def _one_size(t: dict, step: str) -> int:
    s = t.get("max_size")
    if isinstance(s, (list, tuple)):
        if len(s) != 1:
            raise refuse(f"{step} max_size={s}", "a random choice of sizes")
        s = s[0]
    if s is None:
        raise refuse(f"{step} max_size_hw", "only max_size can be expressed")
    return int(s)
