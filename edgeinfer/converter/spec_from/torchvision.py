"""The spec from a torchvision classification preset, weights enum or ``Compose``.

Duck-typed by class name and attributes: torchvision's PyPI wheel is CUDA-linked and does
not import beside the CPU torch here, and edgeinfer must not need it. The rules are
torchvision's (transforms/functional.py): ``Resize(int)`` resizes the shorter side with
the long side ``int(size * long / short)`` (floored); ``CenterCrop`` offsets are
``int(round(margin / 2))`` (halves to even). Evaluation on PIL images resamples with
Pillow (antialiased); on tensors ``antialias=True`` (the default since 0.17) is the same
filter, ``antialias=False`` is plain interpolation.
"""

from __future__ import annotations

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

TO_FLOAT = ("ToTensor", "ConvertImageDtype", "ToDtype", "ToImage", "PILToTensor",
            "ToImageTensor", "ToPureTensor")


def is_torchvision(obj: Any) -> bool:
    name = type(obj).__name__
    return (name == "ImageClassification" and hasattr(obj, "crop_size")) or (
        name == "Compose" and isinstance(getattr(obj, "transforms", None), (list, tuple)))


def from_weights(obj: Any) -> Any | None:
    """A torchvision weights enum (``ResNet50_Weights.IMAGENET1K_V2``) -> its preset."""
    tf = getattr(obj, "transforms", None)
    if callable(tf) and hasattr(obj, "meta") and hasattr(obj, "url"):
        return tf()
    return None


def derive(obj: Any, frame_color: str = "BGR", layout: str = "NCHW") -> Derived:
    if type(obj).__name__ == "ImageClassification":
        steps = [("Resize", {"size": list(obj.resize_size), "interpolation":
                             obj.interpolation, "antialias": getattr(obj, "antialias", True)}),
                 ("CenterCrop", {"size": list(obj.crop_size)}),
                 ("ToTensor", {}), ("Normalize", {"mean": obj.mean, "std": obj.std})]
    else:
        steps = [(type(t).__name__, vars(t)) for t in obj.transforms]
    return derive_steps(steps, frame_color, layout)


def derive_steps(steps: list[tuple[str, dict]], frame_color: str, layout: str) -> Derived:
    size: tuple[int, int] | None = None
    shorter: int | None = None
    interp, antialias = "linear", True
    scale, mean, std = 1.0, (0.0,), (1.0,)
    read: list[dict] = []
    for name, a in steps:
        step = f"torchvision {name}"
        read.append({"step": name} | {k: _plain(v) for k, v in a.items()
                                      if k in ("size", "interpolation", "antialias", "mean",
                                               "std", "dtype", "scale", "max_size")})
        if name == "Resize":
            if a.get("max_size") is not None:
                raise refuse(f"{step} max_size={a['max_size']}", "cannot be expressed")
            interp = interpolation(a.get("interpolation", "bilinear"), PIL_CODES, step)
            antialias = a.get("antialias") is not False  # None/"warn"/True: PIL filter
            s = a["size"]
            if isinstance(s, int) or (isinstance(s, (list, tuple)) and len(s) == 1):
                shorter = int(s if isinstance(s, int) else s[0])
            else:
                size = hw(s, step)
        elif name == "CenterCrop":
            crop = hw(a["size"], step)
            if shorter is None:
                if size is None or crop != size:
                    raise refuse(step, "a crop without a shorter-side Resize before it cannot "
                                 "be expressed")
            else:
                size = crop
        elif name == "Normalize":
            mean, std = floats(a["mean"]), floats(a["std"])
        elif name == "ToTensor":
            scale = 1 / 255
        elif name in ("ConvertImageDtype", "ToDtype"):
            if "float" in str(a.get("dtype")) and a.get("scale", True):
                scale = 1 / 255
        elif name in TO_FLOAT:
            pass
        else:
            raise refuse(step, "only Resize, CenterCrop, ToTensor/PILToTensor/"
                         "ConvertImageDtype/ToDtype and Normalize can be expressed (random "
                         "and per-image steps cannot)")
    if size is None:
        raise refuse("torchvision Resize(int) without CenterCrop", "the model input then "
                     "has a frame-dependent size")
    common = dict(size=size, interpolation=interp, antialias=antialias,
                  frame_color=frame_color, model_color="RGB", scale=scale, mean=mean,
                  std=std, layout=layout)
    if shorter is not None:
        spec = PreprocessSpec(resize="shorter_crop", resize_shorter=shorter,
                              size_rounding="floor", crop_rounding="half_even", **common)
    else:
        spec = PreprocessSpec(resize="stretch", **common)
    notes = ("Pillow resizes uint8 images and rounds after each pass: up to 1 grey level",)
    return Derived(spec, "torchvision", {"steps": read}, notes)


def _plain(v: Any) -> Any:
    if hasattr(v, "value") and isinstance(v.value, str):
        return v.value
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v if isinstance(v, (int, float, str, bool, type(None))) else str(v)
