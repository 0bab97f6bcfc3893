"""Fit (the letterbox/crop/pad_resize placement and its inverse) where mutation testing
found the tests blind (session 10, docs/mutation/detection.md): the round trips held
within a pixel, so a half-pixel pad, a crop size rounded the other way, a wrong
``pad_resize`` scale or an unclipped inverse all passed. Checked here against the spec's
own sizes and offsets (``PreprocessSpec.resized_size`` / ``crop_offsets``, what every
execution runs), the padded resize's own pixels, and hand figures."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.errors import ConfigError
from edgeinfer.runtime.detect.geometry import MODES, fit, pad_to_aspect
from edgeinfer.runtime.detect.pixels import pillow_resize_padded
from edgeinfer.spec import PreprocessSpec

FRAMES = [(480, 640), (640, 480), (333, 517), (425, 640), (640, 425), (500, 500)]


@pytest.mark.parametrize("frame", FRAMES)
def test_crop_is_the_specs_shorter_crop_exactly(frame: tuple[int, int]) -> None:
    """``crop`` is what the diagnosis runs as ``shorter_crop`` (detect_pipelines): the same
    resized size (half up) and the same whole-pixel crop offset (floor: 425 x 640 ->
    224 x 337 is cut 56 px on the left, 57 on the right)."""
    f = fit(frame, (224, 224), "crop")
    spec = PreprocessSpec(size=(224, 224), resize="shorter_crop", resize_shorter=224)
    size = spec.resized_size(*frame)
    assert f.resized == size
    assert (-f.pad_y, -f.pad_x) == spec.crop_offsets(*size)
    assert float(f.pad_y).is_integer() and float(f.pad_x).is_integer()
    assert (f.frame, f.input, f.mode) == (frame, (224, 224), "crop")


def test_letterbox_pads_whole_pixels_the_odd_one_last() -> None:
    f = fit((425, 640), (320, 320))  # 213 rows (212.5 half up): 107 rows of padding
    assert (f.resized, f.pad_y, f.pad_x) == ((213, 320), 53, 0)
    assert (f.frame, f.input, f.mode) == ((425, 640), (320, 320), "letterbox")
    f = fit((640, 425), (320, 320))  # the same on the other axis: 107 columns
    assert (f.resized, f.pad_y, f.pad_x) == ((320, 213), 0, 53)
    s = fit((425, 640), (320, 320), "stretch")
    assert (s.input, s.mode, s.pad_x, s.pad_y) == ((320, 320), "stretch", 0.0, 0.0)


def test_pad_to_aspect_is_mediapipes_rounding() -> None:
    """Fractions of the padded side, truncated; the odd pixel goes right/bottom."""
    assert pad_to_aspect((480, 640), (128, 128)) == ((80, 80), (0, 0), (640, 640))
    assert pad_to_aspect((640, 480), (128, 128)) == ((0, 0), (80, 80), (640, 640))
    assert pad_to_aspect((301, 517), (128, 256)) == ((0, 0), (42, 43), (301, 602))
    assert pad_to_aspect((517, 301), (256, 128)) == ((42, 43), (0, 0), (602, 301))


@pytest.mark.parametrize("frame", [(480, 640), (640, 480), (301, 517), (517, 301)])
def test_pad_resize_lands_where_the_padded_resize_puts_the_pixels(
        frame: tuple[int, int]) -> None:
    """A bright block, padded to the input's aspect and resized as the BlazeFace runtime
    does (pillow_resize_padded), lands where Fit.to_input says, and comes back."""
    h, w = frame
    x0, y0, x1, y1 = w // 5, h // 3, (3 * w) // 4, (4 * h) // 5
    img = np.zeros((h, w, 3), np.uint8)
    img[y0:y1, x0:x1] = 255
    nh, nw = 128, 192
    (t, b), (left, r), _ = pad_to_aspect(frame, (nh, nw))
    out = pillow_resize_padded(img, (t, b, left, r), nh, nw)[:, :, 0] > 127
    ys, xs = np.flatnonzero(out.any(axis=1)), np.flatnonzero(out.any(axis=0))
    f = fit(frame, (nh, nw), "pad_resize")
    assert (f.frame, f.input, f.mode) == (frame, (nh, nw), "pad_resize")
    want = f.to_input([[x0, y0, x1, y1]])[0]
    np.testing.assert_allclose([xs[0], ys[0], xs[-1] + 1, ys[-1] + 1], want, atol=1.0)
    np.testing.assert_allclose(f.to_frame(want[None]), [[x0, y0, x1, y1]], atol=1e-9)
    corners = want.reshape(2, 2)  # keypoints come back by the same inverse
    np.testing.assert_allclose(f.points_to_frame(corners), [[x0, y0], [x1, y1]], atol=1e-9)


def test_to_frame_clips_to_the_frame_by_default_on_both_sides() -> None:
    f = fit((480, 640), (640, 640))  # 80 rows of padding above and below
    inp = [[-20, 40, 700, 620]]  # past every edge of the frame's part of the input
    np.testing.assert_allclose(f.to_frame(inp), [[0, 0, 640, 480]])
    np.testing.assert_allclose(f.to_frame(inp, clip=False), [[-20, -40, 700, 540]])


def test_float16_boxes_are_mapped_in_float64() -> None:
    """A half-precision model's boxes: the inverse runs in float64 (float16 steps are a
    quarter to half a pixel at these sizes, the size of the box bound itself)."""
    f = fit((425, 640), (320, 320))
    box16 = np.array([[100.25, 60.5, 300.75, 250.25]], np.float16)
    want = (box16.astype(np.float64) - [0, 53, 0, 53]) / [0.5, 213 / 425, 0.5, 213 / 425]
    back = f.to_frame(box16, clip=False)
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back, want)
    there = f.to_input(box16)
    assert there.dtype == np.float64
    np.testing.assert_array_equal(there, box16.astype(np.float64) * ([0.5, 213 / 425] * 2)
                                  + [0, 53, 0, 53])


@pytest.mark.parametrize("frame, input", [((0, 10), (5, 5)), ((10, 0), (5, 5)),
                                          ((10, 10), (0, 5)), ((10, 10), (5, 0))])
def test_every_size_must_be_positive(frame: tuple[int, int], input: tuple[int, int]) -> None:
    with pytest.raises(ConfigError, match="sizes must be positive"):
        fit(frame, input)


def test_an_unknown_fit_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="choose from letterbox, pad_resize, stretch, crop$"):
        fit((10, 10), (5, 5), "squash")
    assert MODES == ("letterbox", "pad_resize", "stretch", "crop")


def test_a_frame_of_the_inputs_aspect_gets_no_padding() -> None:
    """35x15 into 7x3 (and 2155 other frame/input pairs between 96 and 640, e.g. 21x119
    into 96x544) got -1 px of padding from float truncation, so the letterbox scaled by
    3/14 instead of 3/15 (found by mutation testing, session 10)."""
    from edgeinfer.runtime.detect.geometry import pad_to_aspect

    assert pad_to_aspect((35, 15), (7, 3)) == ((0, 0), (0, 0), (35, 15))
    assert pad_to_aspect((21, 119), (96, 544)) == ((0, 0), (0, 0), (21, 119))
    for ih in range(96, 641, 32):
        for iw in range(96, 641, 32):
            for k in (1, 3, 7):
                (t, b), (left, r), (ph, pw) = pad_to_aspect((ih * k // 8 or 1, iw * k // 8 or 1),
                                                            (ih, iw))
                assert min(t, b, left, r) >= 0
