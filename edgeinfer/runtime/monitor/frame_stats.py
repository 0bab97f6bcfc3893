"""Per-frame statistics the monitor compares with the parity data: cheap, numpy + OpenCV only.

Why these: the shifts that cost a deployed CNN accuracy (light, blur, sensor noise, colour
cast, a smaller or differently shaped frame) each move at least one of them, and each is a
word a user can act on ("frames are darker"). They are computed on a strided sample of the
frame (no resize: a resize would itself blur and hide blur), so one frame costs tens of
microseconds whatever its size. Sharpness and noise are measured at native resolution on a
centre crop, where a blur or grain is still visible.
"""

from __future__ import annotations

import cv2
import numpy as np

#: The statistics, in the order of :func:`frame_stats`'s output.
FRAME_SIGNALS: tuple[str, ...] = ("brightness", "contrast", "saturation", "warmth",
                                  "sharpness", "noise", "pixels", "aspect")
#: The smallest spread a signal's reference is given, in its own units: a reference of
#: frames all of one size has a standard deviation of 0 (or 1e-15 after rounding), and any
#: difference would read as thousands of sigmas.
FLOORS: dict[str, float] = {"brightness": 1.0, "contrast": 1.0, "saturation": 0.05,
                            "warmth": 1.0, "sharpness": 0.01, "noise": 0.1, "pixels": 0.1,
                            "aspect": 0.01}
#: Side of the strided sample (global statistics) and of the native-resolution crop.
SAMPLE = 48
CROP = 64
# Immerkaer's noise-estimation mask (1996): insensitive to edges of a smooth image.
_NOISE_SCALE = float(np.sqrt(np.pi / 2) / 6)


_GRAY = {"BGR": cv2.COLOR_BGR2GRAY, "RGB": cv2.COLOR_RGB2GRAY}
_HSV = {"BGR": cv2.COLOR_BGR2HSV, "RGB": cv2.COLOR_RGB2HSV}
_NOISE_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)


def _gray(img: np.ndarray, color: str) -> np.ndarray:
    if img.ndim == 2:
        return img
    if img.shape[2] == 1:
        return img[..., 0]
    return cv2.cvtColor(img, _GRAY[color])


def frame_stats(frame: np.ndarray, color: str) -> np.ndarray:
    """float64 ``[len(FRAME_SIGNALS)]`` of one uint8 frame in ``color`` (BGR, RGB or GRAY).

    brightness and contrast: mean and standard deviation of luma (0-255); saturation: mean
    HSV saturation (0-1; 0 for grey frames); warmth: mean red minus mean blue (-255..255);
    sharpness: mean absolute luma gradient at native resolution over the crop's
    standard deviation (a darker frame is not a blurrier one); noise: Immerkaer's sigma at
    native resolution; pixels: log2 of the frame's pixel count; aspect: width / height.
    OpenCV does the arithmetic: a dozen numpy calls on small arrays cost more than the pixels.
    """
    h, w = frame.shape[:2]
    sy, sx = max(1, h // SAMPLE), max(1, w // SAMPLE)
    small = np.ascontiguousarray(frame[::sy, ::sx])
    colour = small.ndim == 3 and small.shape[2] == 3
    mean, std = cv2.meanStdDev(_gray(small, color))
    out = np.empty(len(FRAME_SIGNALS))
    out[0], out[1] = mean[0, 0], std[0, 0]
    if colour:
        out[2] = cv2.mean(cv2.cvtColor(small, _HSV[color]))[1] / 255.0
        m = cv2.mean(small)
        out[3] = (m[2] - m[0]) if color == "BGR" else (m[0] - m[2])
    else:
        out[2] = out[3] = 0.0
    y0, x0 = max(0, (h - CROP) // 2), max(0, (w - CROP) // 2)
    crop = _gray(np.ascontiguousarray(frame[y0:y0 + CROP, x0:x0 + CROP]), color)
    ch, cw = crop.shape
    if ch >= 3 and cw >= 3:
        f = crop.astype(np.float32)
        gx = cv2.norm(f[:, 1:], f[:, :-1], cv2.NORM_L1) / (ch * (cw - 1))
        gy = cv2.norm(f[1:], f[:-1], cv2.NORM_L1) / ((ch - 1) * cw)
        # per unit of the crop's own contrast: darkening scales gradients and contrast
        # alike and must not read as blur
        out[4] = 0.5 * (gx + gy) / (float(f.std()) + 1.0)
        lap = cv2.filter2D(f, -1, _NOISE_KERNEL)[1:-1, 1:-1]
        out[5] = _NOISE_SCALE * cv2.norm(lap, cv2.NORM_L1) / lap.size
    else:
        out[4] = out[5] = 0.0
    out[6] = np.log2(h * w)
    out[7] = w / h
    return out


def frames_stats(frames, color: str) -> np.ndarray:
    """``[N, len(FRAME_SIGNALS)]`` for a sequence of frames (or an N x H x W [x C] array)."""
    return np.stack([frame_stats(f, color) for f in frames]) if len(frames) else np.empty(
        (0, len(FRAME_SIGNALS)))
