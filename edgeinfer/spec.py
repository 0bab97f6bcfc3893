"""PreprocessSpec: the single source of truth for how a raw frame becomes a model input.

The same spec executes three ways and tests hold them together on real photos:

* as the ONNX/TFLite graph prefix baked into every artifact (what deploys),
* as a torch module (``spec.to_torch()``), so training can use exactly what deploys,
* as the plain numpy/OpenCV reference below (``spec.reference(frame)``).

Order of operations (all three follow it): cast the uint8 frame to float32, resize
(stretch | shorter side then centre crop | letterbox | stretch to ``crop_from`` then centre
crop), convert colour (a per-pixel
linear map, so it commutes with resizing and is done on the small image), scale,
subtract mean, divide by std, lay out as NCHW or NHWC. Output sizes are computed with
integer arithmetic (round half up) so every execution picks the same pixel grid.

This module imports only numpy and OpenCV: the runtime depends on it.
"""

from __future__ import annotations

import json
import operator
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from edgeinfer.errors import SpecError
from edgeinfer.resample import filter_taps
from edgeinfer.resample import resize as _resize
from edgeinfer.spec_types import check_field_types

COLORS = ("BGR", "RGB", "GRAY")
RESIZE_POLICIES = ("stretch", "shorter_crop", "letterbox", "stretch_crop")
# No "nearest": at exact ties ((i + .5) * in / out integral) OpenCV rounds exactly while
# onnxruntime and torch compute in float and pick the pixel below, so the executions
# would disagree by whole pixels. Linear and cubic agree to 0.01 of a pixel everywhere.
INTERPOLATIONS = ("linear", "cubic")
LAYOUTS = ("NCHW", "NHWC")
# Kept-aspect side: "half_up" (default) or "floor", torchvision's/HF's int(s * long / short)
# (427x640 -> 256x383 there, 256x384 half up, and the crop moves a pixel). Crop offset of an
# odd margin: "floor" (HF, albumentations) or "half_even", torchvision's CenterCrop
# int(round(margin / 2)): a 235 -> 224 crop starts at row 6 there, at row 5 with floor.
SIZE_ROUNDINGS = ("half_up", "floor")
CROP_ROUNDINGS = ("floor", "half_even")
# ITU-R BT.601 luma, the weights cv2.cvtColor(..., COLOR_BGR2GRAY) uses.
GRAY_WEIGHTS_RGB = (0.299, 0.587, 0.114)
SPEC_VERSION = 1


def channels_of(color: str) -> int:
    """Number of channels a frame or model input of this colour has."""
    return 1 if color == "GRAY" else 3


@dataclass(frozen=True)
class PreprocessSpec:
    """How a raw uint8 frame (NHWC, ``frame_color`` order) becomes the model's float input.

    ``size`` is (height, width) of the model input. ``resize_shorter`` is the shorter-side
    length before the centre crop (``shorter_crop`` only; default: ``max(size)``, i.e. no
    margin). ``crop_from`` is the (height, width) a ``stretch_crop`` stretches the frame to,
    aspect ignored, before the centre crop: timm's ``squash`` with ``crop_pct < 1`` and
    DeiT-style processors (size 256x256, crop 224). ``pad_value`` is the letterbox fill in
    frame pixel units (0..255). ``scale``
    multiplies pixel values before ``mean``/``std`` are applied:
    ``y = (x * scale - mean) / std``.

    ``antialias`` selects Pillow's resampling (what timm, torchvision and Hugging Face
    evaluate with): the kernel is widened by the downscale factor, taps outside the image
    are dropped and the weights renormalised, and ``cubic`` then means Pillow's kernel
    (a = -0.5). Without it, ``linear``/``cubic`` are OpenCV's and torch's plain
    interpolation (cubic a = -0.75, borders clamped). Measured in docs/resize.md.
    """

    size: tuple[int, int]
    frame_color: str = "BGR"
    model_color: str = "RGB"
    resize: str = "stretch"
    resize_shorter: int | None = None
    interpolation: str = "linear"
    antialias: bool = False
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NCHW"
    pad_value: float = 0.0
    size_rounding: str = "half_up"
    crop_rounding: str = "floor"
    crop_from: tuple[int, int] | None = None
    version: int = field(default=SPEC_VERSION)

    def __post_init__(self) -> None:
        check_field_types(self)
        # Normalise list-ish inputs (from JSON) into tuples so the spec stays hashable.
        for name, cast in (("size", int), ("mean", float), ("std", float)):
            try:
                object.__setattr__(self, name, tuple(cast(v) for v in _seq(getattr(self, name))))
            except (TypeError, ValueError) as e:
                raise SpecError(f"spec.{name} must be a number or a list of numbers, "
                                f"got {getattr(self, name)!r}") from e
        if self.crop_from is not None:
            try:
                object.__setattr__(self, "crop_from", tuple(int(v) for v in _seq(self.crop_from)))
            except (TypeError, ValueError) as e:
                raise SpecError(f"spec.crop_from must be [height, width], got "
                                f"{self.crop_from!r}") from e
        self._validate()

    # ------------------------------------------------------------------ validation
    def _validate(self) -> None:
        def one_of(name: str, value: Any, allowed: tuple[str, ...]) -> None:
            if value not in allowed:
                raise SpecError(f"spec.{name}={value!r} is not one of {', '.join(allowed)}")

        one_of("frame_color", self.frame_color, COLORS)
        one_of("model_color", self.model_color, COLORS)
        one_of("resize", self.resize, RESIZE_POLICIES)
        one_of("interpolation", self.interpolation, INTERPOLATIONS)
        one_of("layout", self.layout, LAYOUTS)
        one_of("size_rounding", self.size_rounding, SIZE_ROUNDINGS)
        one_of("crop_rounding", self.crop_rounding, CROP_ROUNDINGS)
        if self.version != SPEC_VERSION:
            raise SpecError(f"spec.version={self.version} is not supported (this edgeinfer "
                            f"reads version {SPEC_VERSION}); upgrade edgeinfer")
        if len(self.size) != 2 or min(self.size) < 1 or max(self.size) > 8192:
            raise SpecError(f"spec.size={self.size} must be (height, width) in 1..8192")
        n = self.model_channels
        for name in ("mean", "std"):
            vals = getattr(self, name)
            if len(vals) not in (1, n) or not all(np.isfinite(vals)):
                raise SpecError(f"spec.{name} must hold 1 or {n} finite values for "
                                f"model_color={self.model_color}, got {vals}")
        if any(s <= 0 for s in self.std):
            raise SpecError(f"spec.std must be positive, got {self.std}")
        if not (np.isfinite(self.scale) and self.scale > 0):
            raise SpecError(f"spec.scale must be a positive number, got {self.scale}")
        if self.resize_shorter is not None:
            if self.resize != "shorter_crop":
                raise SpecError("spec.resize_shorter only applies to resize='shorter_crop'")
            if int(self.resize_shorter) < max(self.size):
                raise SpecError(f"spec.resize_shorter={self.resize_shorter} must be >= "
                                f"max(size)={max(self.size)} so the centre crop fits")
        if (self.crop_from is None) != (self.resize != "stretch_crop"):
            raise SpecError("spec.crop_from [height, width] is needed by resize='stretch_crop'"
                            " and only applies to it")
        if self.crop_from is not None and (
                len(self.crop_from) != 2 or self.crop_from[0] < self.size[0]
                or self.crop_from[1] < self.size[1] or max(self.crop_from) > 8192):
            raise SpecError(f"spec.crop_from={list(self.crop_from)} must be (height, width), "
                            f"each >= size={list(self.size)} (and <= 8192) so the crop fits")
        if not (0.0 <= self.pad_value <= 255.0):
            raise SpecError(f"spec.pad_value={self.pad_value} must be in 0..255")

    # ------------------------------------------------------------------ properties
    @property
    def frame_channels(self) -> int:
        return channels_of(self.frame_color)

    @property
    def model_channels(self) -> int:
        return channels_of(self.model_color)

    @property
    def shorter(self) -> int:
        """Shorter-side length before the centre crop (``shorter_crop`` only)."""
        return int(self.resize_shorter) if self.resize_shorter else max(self.size)

    @property
    def crops(self) -> bool:
        """Whether the resized frame is centre-cropped to ``size`` (``shorter_crop``,
        ``stretch_crop``)."""
        return self.resize in ("shorter_crop", "stretch_crop")

    @property
    def clips_overshoot(self) -> bool:
        """Cubic resizing overshoots at hard edges (down to -30 / up to 285 on real photos);
        every uint8 pipeline a model is trained with clips it (Pillow writes uint8, OpenCV
        saturates, torchvision clamps uint8 output), so all three executions clip to 0..255
        right after resizing. Without it albumentations' cubic differed by up to 27 grey
        levels (docs/spec_from.md)."""
        return self.interpolation == "cubic"

    def model_input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        h, w = self.size
        c = self.model_channels
        return (batch, c, h, w) if self.layout == "NCHW" else (batch, h, w, c)

    def color_matrix(self) -> np.ndarray:
        """(model_channels, frame_channels) matrix mapping frame colour to model colour.

        Colour conversion is linear per pixel, so one matrix covers every pair
        (channel swap, luma, gray replication) in all three executions.
        """
        rgb_from = {
            "RGB": np.eye(3),
            "BGR": np.eye(3)[::-1],
            "GRAY": np.ones((3, 1)),
        }[self.frame_color]
        to = {
            "RGB": np.eye(3),
            "BGR": np.eye(3)[::-1],
            "GRAY": np.array([GRAY_WEIGHTS_RGB]),
        }[self.model_color]
        return (to @ rgb_from).astype(np.float32)

    def affine(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel (a, b) so that ``y = x * a + b`` equals ``(x * scale - mean) / std``."""
        n = self.model_channels
        mean = np.broadcast_to(np.asarray(self.mean, np.float64), (n,))
        std = np.broadcast_to(np.asarray(self.std, np.float64), (n,))
        a = self.scale / std
        b = -mean / std
        return a.astype(np.float32), b.astype(np.float32)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        if self.crop_from is not None:
            d["crop_from"] = list(self.crop_from)
        # defaults of fields added later are omitted, so older readers load the spec
        for name, default in (("size_rounding", "half_up"), ("crop_rounding", "floor"),
                              ("crop_from", None)):
            if d[name] == default:
                del d[name]
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        if not isinstance(d, dict):
            raise SpecError(f"a spec must be a JSON object, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise SpecError(f"unknown spec field(s): {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(known))}")
        if "size" not in d:
            raise SpecError("a spec needs 'size': [height, width]")
        try:
            return cls(**d)
        except SpecError:
            raise
        except (TypeError, ValueError) as e:
            raise SpecError(f"invalid spec: {e}") from e

    @classmethod
    def from_json(cls, text: str) -> PreprocessSpec:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise SpecError(f"spec is not valid JSON: {e}") from e
        return cls.from_dict(d)

    # ------------------------------------------------------------------ geometry
    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) the frame is resized to before crop/pad, in exact integer arithmetic
        rounded as ``size_rounding`` says."""
        th, tw = self.size
        div = _round_div if self.size_rounding == "half_up" else operator.floordiv
        if self.resize == "stretch":
            return th, tw
        if self.resize == "stretch_crop":
            return self.crop_from  # type: ignore[return-value]
        if self.resize == "shorter_crop":
            s = self.shorter
            short = min(height, width)
            return (div(height * s, short), div(width * s, short))
        # letterbox: fit inside (th, tw), keep the aspect ratio
        if th * width <= tw * height:  # height-limited
            return th, max(1, div(width * th, height))
        return max(1, div(height * tw, width)), tw

    def resample_taps(self, n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
        """The antialiased resize along one axis as (index, weight), each (n_out, K):
        what the numpy reference runs, and what a fixed-size TFLite graph bakes."""
        return filter_taps(n_in, n_out, self.interpolation)

    def crop_offsets(self, nh: int, nw: int) -> tuple[int, int]:
        """(top, left) of the centre crop of an ``nh x nw`` resized frame."""
        th, tw = self.size
        return _half(nh - th, self.crop_rounding), _half(nw - tw, self.crop_rounding)

    # ------------------------------------------------------------------ executions
    def reference(self, frame: np.ndarray) -> np.ndarray:
        """Plain numpy/OpenCV execution: one uint8 frame (H,W[,C]) -> (1, ...) float32.

        Resizing uses cv2.resize on float32 data (OpenCV's uint8 path rounds in fixed point
        and would differ from the graph by up to 0.8 LSB), except antialiased resizing, which
        OpenCV lacks: that is Pillow's separable filter in numpy (:func:`filter_taps`).
        """
        x = np.asarray(frame)
        if x.ndim == 2:
            x = x[:, :, None]
        if x.ndim != 3 or x.shape[2] != self.frame_channels:
            raise SpecError(f"reference() needs an H x W x {self.frame_channels} frame, "
                            f"got shape {np.asarray(frame).shape}")
        x = x.astype(np.float32)
        h0, w0 = x.shape[:2]
        nh, nw = self.resized_size(h0, w0)
        x = _resize(x, nh, nw, self.interpolation, self.antialias)
        if self.clips_overshoot and (nh, nw) != (h0, w0):
            x = np.clip(x, 0.0, 255.0)
        th, tw = self.size
        if self.crops:
            top, left = self.crop_offsets(nh, nw)
            x = x[top:top + th, left:left + tw]
        elif self.resize == "letterbox":
            top, left = (th - nh) // 2, (tw - nw) // 2
            out = np.full((th, tw, x.shape[2]), self.pad_value, np.float32)
            out[top:top + nh, left:left + nw] = x
            x = out
        x = x @ self.color_matrix().T  # (H, W, Cf) @ (Cf, Cm)
        a, b = self.affine()
        x = x * a + b
        if self.layout == "NCHW":
            x = x.transpose(2, 0, 1)
        return np.ascontiguousarray(x[None], dtype=np.float32)

    def to_torch(self) -> Any:
        """The same preprocessing as a ``torch.nn.Module`` (needs the ``convert`` extra)."""
        from edgeinfer.spec_torch import PreprocessModule

        return PreprocessModule(self)

    def geometry(self) -> Callable[[np.ndarray], np.ndarray]:
        """The spec's geometric step alone: uint8 frame ``H x W x C`` -> float32
        ``[1, h, w, C]`` at ``size``, frame colour order, 0..255 (nothing rounded).

        It is :meth:`reference` with the colour map and the normalisation set to the
        identity, i.e. the very code the reference executions use; a fixed-size TFLite
        artifact runs it on the host for frames of another size.
        """
        g = replace(self, model_color=self.frame_color, scale=1.0, mean=(0.0,), std=(1.0,),
                    layout="NHWC")
        return g.reference


def _seq(v: Any) -> tuple:
    if isinstance(v, (int, float)):
        return (v,)
    if isinstance(v, (str, bytes)):
        raise TypeError("a string is not a list of numbers")
    return tuple(v)


def _round_div(num: int, den: int) -> int:
    """round(num / den) with halves rounded up, in exact integer arithmetic."""
    return (2 * num + den) // (2 * den)


def _half(margin: int, rounding: str) -> int:
    """margin / 2 rounded down, or half to even (Python's round, torchvision's crop)."""
    k = margin // 2
    return k + (margin % 2) * (k % 2) if rounding == "half_even" else k


def framework_spec(provenance: dict | None, spec: PreprocessSpec) -> PreprocessSpec:
    """The spec the framework model itself is fed, given an artifact's or a source's
    provenance: a Keras frontend may lift Rescaling / Normalization layers into the
    artifact's spec (``spec``) while the framework model still contains them; its
    provenance then keeps the user's spec as ``spec_given``."""
    given = (provenance or {}).get("spec_given")
    return PreprocessSpec.from_dict(given) if given else spec


def resolve_spec(value: PreprocessSpec | dict | str | os.PathLike) -> PreprocessSpec:
    """The one spec resolver: a PreprocessSpec, its dict, its JSON text or a JSON file path."""
    if isinstance(value, PreprocessSpec):
        return value
    if isinstance(value, dict):
        return PreprocessSpec.from_dict(value)
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if isinstance(text, str) and text.lstrip().startswith("{"):
            return PreprocessSpec.from_json(text)
        from pathlib import Path

        p = Path(text)
        if not p.is_file():
            raise SpecError(f"spec file {p} does not exist (give a PreprocessSpec, a dict, JSON "
                            "text or a JSON file)")
        return PreprocessSpec.from_json(p.read_text())
    raise SpecError(f"a spec must be a PreprocessSpec, a dict, JSON text or a JSON file path, "
                    f"got {type(value).__name__}")

