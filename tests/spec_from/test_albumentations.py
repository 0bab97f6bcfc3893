"""spec_from on real albumentations pipelines: its own output on real photos is the oracle.

albumentations resizes uint8 frames with OpenCV's fixed-point resize (no antialiasing) and
computes sizes in float; the spec resizes float data with exact integer sizes. What is left
is OpenCV's uint8 rounding (documented in docs/spec_from.md).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgeinfer import SpecError, spec_from
from edgeinfer.converter.spec_from import derive

from .conftest import grey_levels, prefix_output

A = pytest.importorskip("albumentations")


def _run(pipe, frame_bgr: np.ndarray) -> np.ndarray:
    out = pipe(image=np.ascontiguousarray(frame_bgr[..., ::-1]))["image"]
    return out.numpy() if hasattr(out, "numpy") else out


@pytest.mark.parametrize("interp", [cv2.INTER_LINEAR, cv2.INTER_CUBIC])
def test_shorter_side_crop_matches_albumentations(interp, photos) -> None:
    pipe = A.Compose([A.SmallestMaxSize(max_size=256, interpolation=interp),
                      A.CenterCrop(224, 224), A.Normalize(), A.ToTensorV2()])
    d = derive(pipe)
    s = d.spec
    assert (s.resize, s.resize_shorter, s.size, s.antialias, s.layout) == (
        "shorter_crop", 256, (224, 224), False, "NCHW")
    assert s.interpolation == ("linear" if interp == cv2.INTER_LINEAR else "cubic")
    assert d.source == "albumentations"
    for name, frame in photos.items():
        diff = grey_levels(s, prefix_output(s, frame), _run(pipe, frame))
        # OpenCV's uint8 resize rounds in fixed point (measured <= 0.77 linear, 0.5 cubic
        # once the spec clips cubic overshoot as OpenCV saturates it; 27 before)
        assert diff.max() <= 1.0, (name, diff.max())
        assert diff.mean() <= 0.3, name


def test_letterbox_from_longest_max_size_and_pad(photos, tmp_path) -> None:
    pipe = A.Compose([A.LongestMaxSize(max_size=256), A.PadIfNeeded(
        256, 256, border_mode=cv2.BORDER_CONSTANT, fill=114), A.ToFloat(max_value=255)])
    s = spec_from(pipe)
    assert (s.resize, s.size, s.pad_value, s.scale, s.layout) == (
        "letterbox", (256, 256), 114.0, 1 / 255, "NCHW")
    path = tmp_path / "aug.json"
    path.write_text(json.dumps(A.to_dict(pipe)))
    assert spec_from(path) == s  # the serialised pipeline reads the same
    frame = photos["chelsea"]
    want = _run(pipe, frame).transpose(2, 0, 1)  # ToFloat keeps HWC
    diff = grey_levels(s, prefix_output(s, frame), want)
    assert diff.max() <= 1.0 and diff.mean() <= 0.3


def test_opencv_code_1_is_linear_not_lanczos() -> None:
    """Resample codes are read per framework: cv2 1 = INTER_LINEAR (PIL 1 = Lanczos)."""
    s = spec_from(A.Compose([A.Resize(224, 224, interpolation=1)]))
    assert s.interpolation == "linear"


@pytest.mark.parametrize("pipe, step", [
    (lambda: A.Compose([A.Resize(224, 224), A.HorizontalFlip(p=0.5)]), "HorizontalFlip"),
    (lambda: A.Compose([A.Resize(224, 224, p=0.9)]), "p=0.9"),
    (lambda: A.Compose([A.Resize(224, 224), A.Normalize(normalization="image")]),
     "normalization='image'"),
    (lambda: A.Compose([A.Resize(224, 224, interpolation=cv2.INTER_AREA)]), "area"),
    (lambda: A.Compose([A.Resize(224, 224, interpolation=cv2.INTER_LANCZOS4)]), "lanczos"),
])
def test_refusals_name_the_step(pipe, step) -> None:
    with pytest.raises(SpecError, match=step):
        spec_from(pipe())
