"""Resampling for the numpy reference: OpenCV's plain interpolation and Pillow's antialiased
filter, the two a spec can name (``PreprocessSpec.interpolation`` / ``antialias``).

Antialiased means *Pillow's uint8 resize*, bit for bit (issue 25, docs/resize_pillow.md):
what timm, torchvision and Hugging Face feed a model is ``Image.resize`` on an 8-bit image,
and Pillow (src/libImaging/Resample.c) does more than apply a float filter. It resizes one
axis (the width, unless :func:`vertical_first`), rounds that pass to uint8 and clips it to
0..255, then resizes the other and rounds again; its weights are fixed point (22
fractional bits) and rounding is ``(sum + 2**21) >> 22``. A float filter that rounds once
differed from it by up to 5.6 grey levels on photos, 12 on stripes and 22 on upscaled noise
(a review's figures; 8.1 / 7.8 / 15.0 on docs/resize_pillow.md's set): cubic overshoot
that Pillow clips between the passes survives into the second pass otherwise.

Every execution computes those integers exactly, so they agree bit for bit with Pillow and
with each other: this numpy reference in int32 (Pillow's own arithmetic), the torch module
and a fixed-size TFLite graph in float32 with each weight split into three 8-bit digits
(:func:`split_coefficients`: every product and partial sum is then an integer below 2**24,
exact in any summation order), the ONNX prefix the same way with taps computed in-graph.
Only numpy and OpenCV: the runtime depends on it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

__all__ = ["PIL_CUBIC_A", "PLAIN_CUBIC_A", "PRECISION_BITS", "SUPPORT",
           "filter_taps", "pillow_coefficients", "pillow_round", "resize",
           "split_coefficients", "vertical_first"]

_CV2_INTERP = {"linear": "INTER_LINEAR", "cubic": "INTER_CUBIC"}
# Pillow's bicubic coefficient; torch's antialiased bicubic and the graph use it too.
PIL_CUBIC_A = -0.5
# The plain (non-antialiased) bicubic coefficient of OpenCV and torch.
PLAIN_CUBIC_A = -0.75
# Pillow's fixed point for 8-bit images: 32 - 8 bits of data - 2 bits of overshoot headroom.
PRECISION_BITS = 22
# Filter support of Pillow's triangle and Keys cubic, before widening by the downscale.
SUPPORT = {"linear": 1.0, "cubic": 2.0}


def resize(x: np.ndarray, nh: int, nw: int, interp: str, antialias: bool) -> np.ndarray:
    """(H, W, C) float32 -> (nh, nw, C) float32. Antialiased: Pillow's uint8 resize of the
    frame (which holds uint8 values; anything else is rounded and clipped first)."""
    h, w = x.shape[:2]
    if (nh, nw) == (h, w):
        return x
    if antialias:
        q = np.clip(np.floor(x + 0.5), 0, 255).astype(np.int32)
        # each pass gathers along axis 0 (the width through a transposed copy: contiguous
        # rows are 2x faster to gather than columns, docs/resize.md); a pass whose size is
        # unchanged is skipped, as Pillow does (it would be the identity anyway)
        if vertical_first(h, w, nh, nw):
            q = _pillow_pass(q, nh, interp)
        if nw != w:
            q = _pillow_pass(np.ascontiguousarray(q.transpose(1, 0, 2)), nw, interp)
            q = np.ascontiguousarray(q.transpose(1, 0, 2))
        return _pillow_pass(q, nh, interp).astype(np.float32)  # no-op if done first
    import cv2

    out = cv2.resize(x, (nw, nh), interpolation=getattr(cv2, _CV2_INTERP[interp]))
    return out.reshape(nh, nw, x.shape[2])


def vertical_first(h: int, w: int, nh: int, nw: int) -> bool:
    """Whether Pillow resizes the height before the width (h x w -> nh x nw).

    Pillow 13 does when the height shrinks by more than twice what the width loses
    (``h - nh > 2 * (w - nw)``, height shrinking); older Pillow always did the width first.
    Measured on noise, not read from its source (the Resample.c of the Pillow source at
    hand, 13.0.0.dev0 of July 2026, still always goes width first): this rule matched every
    one of 142 cases around that line and 600 random sizes bit for bit, linear and cubic;
    the other order differs by up to 22 grey levels. An aspect-keeping downscale goes
    height first only for frames more than twice as tall as wide, where both Pillow
    generations then disagree with each other.
    """
    return nh < h and nw != w and h - nh > 2 * (w - nw)


def _kernel(interp: str, d: np.ndarray) -> np.ndarray:
    """Pillow's filters, written with its operation order (bit-identical doubles):
    triangle (support 1) and Keys cubic with a = -0.5 (support 2)."""
    d = np.abs(d)
    if interp == "linear":
        return np.where(d < 1.0, 1.0 - d, 0.0)
    a = PIL_CUBIC_A
    near = ((a + 2.0) * d - (a + 3.0)) * d * d + 1
    far = (((d - 5) * d + 8) * d - 4) * a
    return np.where(d < 1.0, near, np.where(d < 2.0, far, 0.0))


@lru_cache(maxsize=64)
def pillow_coefficients(n_in: int, n_out: int, interp: str) -> tuple[np.ndarray, np.ndarray]:
    """(index int64, weight int64), each (n_out, K): Pillow's ``precompute_coeffs`` and
    ``normalize_coeffs_8bpc`` along one axis, weights in 22-bit fixed point.

    Half-pixel centres; the kernel widened by the downscale factor; the window is
    ``[int(c - support + .5), int(c + support + .5))`` cut to the image (taps outside are
    dropped and the row renormalised: ONNX ``exclude_outside=1``); each weight rounded half
    away from zero. Indices past a row's window are clamped into the image with weight 0.
    Cached and returned read-only: the same axis recurs for every frame of a stream.
    """
    scale = float(n_in) / n_out
    filterscale = max(scale, 1.0)
    support = SUPPORT[interp] * filterscale
    k = int(np.ceil(support)) * 2 + 1
    center = (np.arange(n_out) + 0.5) * scale
    xmin = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    count = np.minimum(np.trunc(center + support + 0.5), n_in).astype(np.int64) - xmin
    taps = np.arange(k)
    idx = xmin[:, None] + taps[None, :]
    wgt = _kernel(interp, (idx - center[:, None] + 0.5) * (1.0 / filterscale))
    wgt = np.where(taps[None, :] < count[:, None], wgt, 0.0)
    ww = np.cumsum(wgt, axis=1)[:, -1:]  # sequential, as Pillow's loop
    wgt = wgt / np.where(ww != 0.0, ww, 1.0)
    scaled = wgt * (1 << PRECISION_BITS)
    coef = np.where(scaled < 0, np.trunc(-0.5 + scaled), np.trunc(0.5 + scaled))
    idx, coef = np.minimum(idx, n_in - 1), coef.astype(np.int64)
    idx.flags.writeable = coef.flags.writeable = False
    return idx, coef


def filter_taps(n_in: int, n_out: int, interp: str) -> tuple[np.ndarray, np.ndarray]:
    """(index, weight float32), each (n_out, K): Pillow's fixed-point weights as floats
    (``k / 2**22``, exact in float32): the filter itself, for studies and plots; the
    executions round as Pillow does through :func:`split_coefficients`."""
    idx, coef = pillow_coefficients(n_in, n_out, interp)
    return idx, (coef / float(1 << PRECISION_BITS)).astype(np.float32)


def split_coefficients(coef: np.ndarray) -> np.ndarray:
    """(..., 3) float32 signed base-256 digits ``(d2, d1, d0)`` of Pillow's integer weights:
    ``coef = d2 * 2**16 + d1 * 2**8 + d0`` with every ``|d| <= 128``.

    Pillow's pass is ``floor((sum(p * coef) + 2**21) / 2**22)`` on integers up to 2**31,
    which float32 cannot hold. With one sum per digit, ``S_i = sum(p * d_i)``, every
    product and partial sum is an integer below 2**24 (up to 449 taps: a 56x cubic or
    112x linear downscale), hence exact in float32 in any summation order, with or without
    FMA, and even where a GPU multiplies in TF32 (8-bit digits and 8-bit pixels fit its
    mantissa). :func:`pillow_round` then carries the digits into Pillow's integer.
    """
    c = np.asarray(coef, np.float64)
    d0 = c - 256.0 * np.floor(c / 256.0 + 0.5)
    r = (c - d0) / 256.0
    d1 = r - 256.0 * np.floor(r / 256.0 + 0.5)
    d2 = (r - d1) / 256.0
    return np.stack([d2, d1, d0], axis=-1).astype(np.float32)


def pillow_round(s2: np.ndarray, s1: np.ndarray, s0: np.ndarray) -> np.ndarray:
    """Pillow's rounding of one pass from the digit sums (:func:`split_coefficients`),
    clipped to 0..255 as its ``clip8``: ``floor((n + y) / m) = floor((n + floor(y)) / m)``
    for an integer n, so the carries are exact floats. The numpy twin of the graph's ops
    and the torch module's."""
    c0 = np.floor((s0 + float(1 << (PRECISION_BITS - 1))) / 256.0)
    c1 = np.floor((s1 + c0) / 256.0)
    out = np.floor((s2 + c1) / float(1 << (PRECISION_BITS - 16)))
    return np.clip(out, 0.0, 255.0)


def _pillow_pass(q: np.ndarray, n_out: int, interp: str) -> np.ndarray:
    """Pillow's 8-bit pass along axis 0 of an (N, M, C) int32 array: integer
    multiply-adds from ``2**21``, an arithmetic shift by 22, clipped to 0..255 (int32 holds
    it: Pillow's own accumulator is an ``int``)."""
    if q.shape[0] == n_out:
        return q
    idx, coef = pillow_coefficients(q.shape[0], n_out, interp)
    coef = coef.astype(np.int32)
    shape = (n_out,) + q.shape[1:]
    out = np.full(shape, 1 << (PRECISION_BITS - 1), np.int32)
    buf = np.empty(shape, np.int32)
    for j in range(idx.shape[1]):
        np.take(q, idx[:, j], axis=0, out=buf)
        buf *= coef[:, j, None, None]
        out += buf
    out >>= PRECISION_BITS
    return np.clip(out, 0, 255, out=out)
