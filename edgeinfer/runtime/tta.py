"""Test-time augmentation: a few views of one frame, run as one batch, probabilities averaged.

Policies, by name:

* ``"none"``: the frame itself (1 view, no copy).
* ``"hflip"``: the frame and its horizontal mirror (2 views).
* ``"hflip+crops"``: five crops of 87.5% of the frame's height and width (the four
  corners and the centre), each with its mirror (10 views). The full frame itself is not
  a view, as in the classic ten-crop evaluation.

All views of one frame have the same size, so they go through the artifact as ONE batch
in ONE session call, and the artifact's own preprocessing resizes each view. The mean is
taken in a fixed order (view 0 + view 1 + ... then divided), so a frame's result does not
depend on what else was in its batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeinfer.errors import ConfigError

POLICIES = ("none", "hflip", "hflip+crops")
CROP_NUM, CROP_DEN = 7, 8  # crops are 87.5% = 7/8 of each side


@dataclass(frozen=True)
class TTAPolicy:
    """A named policy: how many views it makes of a frame, and the views themselves."""

    name: str

    @property
    def num_views(self) -> int:
        return {"none": 1, "hflip": 2, "hflip+crops": 10}[self.name]

    def view_shape(self, frame_shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(height, width, channels) of every view of a frame of this shape."""
        h, w, c = frame_shape
        if self.name == "hflip+crops":
            return crop_side(h), crop_side(w), c
        return h, w, c

    def views(self, frame: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``[num_views, h, w, C]`` uint8 views of one ``H x W x C`` frame.

        ``out``, if given, is a C-contiguous ``[num_views, h, w, C]`` uint8 array to write
        into (a slice of a larger batch); for ``"none"`` without ``out`` the result is a
        view of ``frame``, not a copy.
        """
        if self.name == "none":
            if out is None:
                return frame[None]
            out[0] = frame
            return out
        if out is None:
            out = np.empty((self.num_views, *self.view_shape(frame.shape)), np.uint8)
        if self.name == "hflip":
            out[0] = frame
            out[1] = frame[:, ::-1]
            return out
        h, w = frame.shape[:2]
        ch, cw = crop_side(h), crop_side(w)
        bottom, right = h - ch, w - cw
        origins = ((0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2))
        for i, (top, left) in enumerate(origins):
            crop = frame[top:top + ch, left:left + cw]
            out[2 * i] = crop
            out[2 * i + 1] = crop[:, ::-1]
        return out


def crop_side(n: int) -> int:
    """round(n * 7/8), halves up, in integers; at least 1."""
    return max(1, (2 * CROP_NUM * n + CROP_DEN) // (2 * CROP_DEN))


def get_policy(name: str | None) -> TTAPolicy:
    """The policy called ``name`` (``None`` means ``"none"``); ConfigError if unknown."""
    if name is None:
        name = "none"
    if not isinstance(name, str) or name not in POLICIES:
        raise ConfigError(f"unknown TTA policy {name!r}; use one of: {', '.join(POLICIES)}")
    return TTAPolicy(name)


def average_views(probs: np.ndarray, num_views: int) -> np.ndarray:
    """``[n * num_views, K]`` view probabilities -> ``[n, K]`` per-frame means (float32).

    Views of a frame are consecutive rows. Summed in view order, so the result for a frame
    is bit-identical whether it was run alone or inside a larger batch.
    """
    if num_views == 1:
        return probs
    p = probs.reshape(-1, num_views, probs.shape[-1])
    acc = p[:, 0].copy()
    for v in range(1, num_views):
        acc += p[:, v]
    acc /= np.float32(num_views)
    return acc
