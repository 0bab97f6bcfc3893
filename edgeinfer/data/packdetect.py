"""A detector's parity pack: the framework's detections per frame, as pack members (issue 28).

Why not ``reference.npy``: a classifier's reference is one probability row per frame; a
detector's is a variable number of boxes per frame. The pack keeps its one format
(:mod:`edgeinfer.data.packfile`, manifest ``task = "detect"`` and the detector's
``detection`` settings) and stores the detections flat, with offsets, like the encoded files:

- ``det_boxes.npy``: float64 ``[M, 4]``, xyxy in the frame's own pixels (float64: the
  fp32 bound is half a pixel and the measured error 6e-5 px, below float32's step at
  1000 px; nothing is rounded before the device compares);
- ``det_scores.npy``: float64 ``[M]``; ``det_classes.npy``: int64 ``[M]``;
- ``det_offsets.npy``: int64 ``[N + 1]``: frame ``i``'s detections are rows
  ``offsets[i]:offsets[i + 1]``.

Only numpy (the lean install reads packs); shapes are checked against each other before
anything is read (the schema's rule), values after.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeinfer.data.packschema import Member, read_array

#: A frame's detections: (boxes [K, 4], scores [K], classes [K]).
Detections = tuple[np.ndarray, np.ndarray, np.ndarray]
MEMBERS = ("det_boxes.npy", "det_scores.npy", "det_classes.npy", "det_offsets.npy")


def detection_arrays(dets: Sequence[Detections]) -> dict[str, np.ndarray]:
    """The four members for ``dets`` (one entry per frame)."""
    boxes = [np.asarray(b, np.float64).reshape(-1, 4) for b, _, _ in dets]
    scores = [np.asarray(s, np.float64).reshape(-1) for _, s, _ in dets]
    classes = [np.asarray(c, np.int64).reshape(-1) for _, _, c in dets]
    for i, (b, s, c) in enumerate(zip(boxes, scores, classes, strict=True)):
        if not len(b) == len(s) == len(c):
            raise ValueError(f"frame {i}: {len(b)} boxes, {len(s)} scores, {len(c)} classes")
    return {"det_boxes.npy": np.concatenate(boxes) if boxes else np.zeros((0, 4)),
            "det_scores.npy": np.concatenate(scores) if scores else np.zeros(0),
            "det_classes.npy": (np.concatenate(classes) if classes
                                else np.zeros(0, np.int64)),
            "det_offsets.npy": np.cumsum([0] + [len(b) for b in boxes], dtype=np.int64)}


def check_members(ms: dict[str, Member], n: int, task: str) -> None:
    """ValueError unless a detector pack has all four members, consistent with ``n``
    frames, and a classifier pack none."""
    have = [k for k in MEMBERS if k in ms]
    if task != "detect":
        if have:
            raise ValueError(f"{have[0]} in a pack whose task is {task!r}")
        return
    if len(have) != len(MEMBERS):
        raise ValueError(f"a detector pack lacks {sorted(set(MEMBERS) - set(have))[0]}")
    m = ms["det_boxes.npy"].shape[0]
    if ms["det_boxes.npy"].shape[1:] != (4,) or ms["det_scores.npy"].shape != (m,) \
            or ms["det_classes.npy"].shape != (m,):
        raise ValueError("det_boxes / det_scores / det_classes do not have one row per box")
    if ms["det_offsets.npy"].shape != (n + 1,):
        raise ValueError(f"det_offsets {list(ms['det_offsets.npy'].shape)} for {n} frames")


def read_detections(z: zipfile.ZipFile, ms: dict[str, Member], n_classes: int
                    ) -> list[Detections]:
    """The stored detections per frame; ValueError on NaN/inf boxes, scores outside
    [0, 1], classes outside ``[0, n_classes)`` or offsets that do not cut the rows."""
    arrays: dict[str, Any] = {k: read_array(z, k, ms[k]) for k in MEMBERS}
    boxes, scores = arrays["det_boxes.npy"], arrays["det_scores.npy"]
    classes, offsets = arrays["det_classes.npy"], arrays["det_offsets.npy"]
    if not np.isfinite(boxes).all():
        raise ValueError("det_boxes.npy holds NaN or inf")
    if len(scores) and not (np.isfinite(scores).all() and scores.min() >= 0
                            and scores.max() <= 1 + 1e-6):
        raise ValueError("det_scores.npy holds values outside [0, 1]")
    if len(classes) and (classes.min() < 0 or (n_classes and classes.max() >= n_classes)):
        raise ValueError(f"det_classes.npy holds classes outside [0, {n_classes})")
    if offsets[0] != 0 or offsets[-1] != len(boxes) or (np.diff(offsets) < 0).any():
        raise ValueError("det_offsets.npy does not cut the stored boxes")
    return [(boxes[a:b], scores[a:b], classes[a:b])
            for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)]
