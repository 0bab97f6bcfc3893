"""The frames ``check`` and ``pack`` judge a detector on (issue 28): ``--data builtin:detect``
is convert's own gate set (:func:`~edgeinfer.converter.detect_frames.gate_frames`: the
bundled photos cropped portrait, landscape and square with Fashion-MNIST test items
pasted), so ``check`` repeats the gate's figures on the frames the gate used; a folder of
the user's photos is read as every command reads one (:func:`edgeinfer.data.frames.
load_frames`, the spec's frame colour), each frame's aspect named from its shape.

Here, one floor below the commands, because ``check`` and ``pack`` may not import each
other and must pick the same frames for the same ``--data``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

BUILTIN = "builtin:detect"


def aspect_of(frame: np.ndarray) -> str:
    """portrait / landscape / square, from the frame's own shape (as the gate groups)."""
    h, w = frame.shape[:2]
    return "square" if h == w else "portrait" if h > w else "landscape"


def detect_data(data: str, spec: Any, limit: int | None = None) -> tuple[list[Any], str]:
    """(frames as ``detect_frames.Frame``, a description) for ``--data``."""
    from edgeinfer.converter.detect_frames import Frame, gate_frames

    if data == BUILTIN:
        fs = gate_frames()
        if limit is not None:  # every aspect kept: the gate set is aspect by aspect
            per = max(1, limit // 3)
            fs = [f for a in ("portrait", "landscape", "square")
                  for f in [g for g in fs if g.aspect == a][:per]][:limit]
        if spec.frame_color == "RGB":  # the gate's frames are BGR, as OpenCV decodes
            fs = [Frame(np.ascontiguousarray(f.image[:, :, ::-1]), f.boxes, f.classes,
                        f.aspect) for f in fs]
        return fs, (f"{len(fs)} gate frames (bundled photos with Fashion-MNIST test items "
                    "pasted; not your data)")
    from edgeinfer.data.frames import load_frames
    from edgeinfer.runtime.image_probe import probe

    fset = load_frames(data, spec, limit=limit, probe=probe)
    empty = np.zeros((0, 4))
    out = [Frame(f, empty, np.zeros(0, np.int64), aspect_of(f)) for f in fset.frames]
    return out, fset.description
