"""Detection in the lean runtime (issue 28): a uint8 frame of any size in, boxes in that
frame's own pixels out. geometry (letterbox / pad_resize / stretch / crop and the exact
inverse), pixels (Pillow's antialiased resize on uint8, bit for bit), decode (MediaPipe's
SSD anchors), nms (class-aware and MediaPipe's weighted), blazeface (the bundled
description of a third-party detector), detector (``Detector``, ``Detection``).
numpy, OpenCV and LiteRT only."""

from __future__ import annotations

#: ``blazeface:VARIANT`` names a bundled third-party detector (served as it is)
BUNDLED = "blazeface:"


def is_detector(name: object) -> bool:
    """Whether a model name given to predict / serve / watch / bench names a detector
    (cheap: serve asks it of every path before loading anything)."""
    return str(name).startswith(BUNDLED)


def served_name(name: object) -> str:
    """The name a detector is served under: ``blazeface:short_range`` ->
    ``blazeface_short_range`` (the protocol's model names are path segments)."""
    return str(name).replace(":", "_")
