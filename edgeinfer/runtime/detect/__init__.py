"""Detection in the lean runtime (issue 28): a uint8 frame of any size in, boxes in that
frame's own pixels out. geometry (letterbox / pad_resize / stretch / crop and the exact
inverse), pixels (Pillow's antialiased resize on uint8, bit for bit), decode (MediaPipe's
SSD anchors), nms (class-aware and MediaPipe's weighted), blazeface (the bundled
description of a third-party detector), detector (``Detector``, ``Detection``).
numpy, OpenCV and LiteRT only."""

from __future__ import annotations

import os

#: ``blazeface:VARIANT`` names a bundled third-party detector (served as it is)
BUNDLED = "blazeface:"


def is_detector(name: object) -> bool:
    """Whether a model name given to predict / serve / watch / bench names a detector:
    ``blazeface:VARIANT``, or a file carrying an ``edgeinfer.task`` key (only detector
    artifacts write one; :func:`.loader.open_detector` confirms it from the metadata)."""
    if str(name).startswith(BUNDLED):
        return True
    if not isinstance(name, (str, os.PathLike)) or not os.path.isfile(name):
        return False
    try:
        with open(name, "rb") as f:
            return b"edgeinfer.task" in f.read()
    except OSError:
        return False  # the model's own loader says why


def served_name(name: object) -> str:
    """The name a detector is served under: ``blazeface:short_range`` ->
    ``blazeface_short_range`` (the protocol's model names are path segments); an artifact
    by its file stem, as every served model."""
    s = str(name)
    return s.replace(":", "_") if s.startswith(BUNDLED) else os.path.splitext(
        os.path.basename(s))[0]
