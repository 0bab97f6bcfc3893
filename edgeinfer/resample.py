"""Resampling for the numpy reference: OpenCV's plain interpolation and Pillow's antialiased
filter, the two a spec can name (``PreprocessSpec.interpolation`` / ``antialias``).

OpenCV has no antialiased resize, so Pillow's separable filter is written here in numpy
(:func:`filter_taps`); the ONNX prefix (Resize ``antialias=1``), the torch module and a
fixed-size TFLite graph (baked taps) compute the same filter, and tests hold them together.
Only numpy and OpenCV: the runtime depends on it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["PIL_CUBIC_A", "PLAIN_CUBIC_A", "filter_taps", "resize"]

_CV2_INTERP = {"linear": "INTER_LINEAR", "cubic": "INTER_CUBIC"}
# Pillow's bicubic coefficient; torch's antialiased bicubic and the graph use it too.
PIL_CUBIC_A = -0.5
# The plain (non-antialiased) bicubic coefficient of OpenCV and torch.
PLAIN_CUBIC_A = -0.75


def resize(x: np.ndarray, nh: int, nw: int, interp: str, antialias: bool) -> np.ndarray:
    h, w = x.shape[:2]
    if (nh, nw) == (h, w):
        return x
    if antialias:
        # rows first (contiguous), then columns through a transposed copy: 2x faster than
        # gathering along axis 1 (measured, docs/resize.md)
        x = _resample_rows(x, nh, interp)
        x = _resample_rows(np.ascontiguousarray(x.transpose(1, 0, 2)), nw, interp)
        return np.ascontiguousarray(x.transpose(1, 0, 2))
    import cv2

    out = cv2.resize(x, (nw, nh), interpolation=getattr(cv2, _CV2_INTERP[interp]))
    return out.reshape(nh, nw, x.shape[2])


def _kernel(interp: str, d: np.ndarray) -> np.ndarray:
    """Pillow's filters: triangle (support 1) and Keys cubic with a = -0.5 (support 2)."""
    d = np.abs(d)
    if interp == "linear":
        return np.clip(1.0 - d, 0.0, None)
    a = PIL_CUBIC_A
    near = ((a + 2.0) * d - (a + 3.0)) * d * d + 1.0
    far = (((d - 5.0) * d + 8.0) * d - 4.0) * a
    return np.where(d < 1.0, near, np.where(d < 2.0, far, 0.0))


def filter_taps(n_in: int, n_out: int, interp: str) -> tuple[np.ndarray, np.ndarray]:
    """(index, weight), each (n_out, K): Pillow's separable resampling along one axis.

    Half-pixel centres; the kernel widened by the downscale factor; taps outside the image
    dropped and each row renormalised (Pillow's rule, ONNX ``exclude_outside=1``). Only a
    row's K taps are kept: O(n_out * K) per line, not a dense n_out x n_in product.
    """
    scale = n_in / n_out
    support = (1.0 if interp == "linear" else 2.0) * max(1.0, scale)
    centers = (np.arange(n_out) + 0.5) * scale - 0.5
    k = int(np.ceil(2 * support)) + 1
    first = np.floor(centers - support).astype(np.int64) + 1
    idx = first[:, None] + np.arange(k)[None, :]
    wgt = _kernel(interp, (idx - centers[:, None]) / max(1.0, scale))
    wgt = np.where((idx >= 0) & (idx < n_in), wgt, 0.0)
    wgt = wgt / wgt.sum(axis=1, keepdims=True)
    return np.clip(idx, 0, n_in - 1), wgt.astype(np.float32)


def _resample_rows(x: np.ndarray, n_out: int, interp: str) -> np.ndarray:
    """Pillow's resampling of an (H, W, C) float32 array along H to ``n_out`` rows."""
    if x.shape[0] == n_out:
        return x
    idx, wgt = filter_taps(x.shape[0], n_out, interp)
    shape = (n_out,) + x.shape[1:]
    out = np.zeros(shape, np.float32)
    buf = np.empty(shape, np.float32)
    for j in range(idx.shape[1]):
        np.take(x, idx[:, j], axis=0, out=buf)
        buf *= wgt[:, j, None, None]
        out += buf
    return out
