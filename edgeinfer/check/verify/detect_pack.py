"""``edgeinfer pack`` for a detector (issue 28, point 3): the framework's detections on real
frames, written for ``verify`` on the device (:mod:`edgeinfer.check.verify.detect`).

The framework half needs torch: the detector source's own pipeline
(:meth:`~edgeinfer.converter.detect_convert.DetectorSource.framework`: the spec's reference
preprocessing, the module, its own NMS, the fit's inverse) on every frame, its boxes in the
frame's pixels, scores and classes stored per frame (:mod:`edgeinfer.data.packdetect`), with
the spec, the labels, the detection settings, the source's weights sha256 and the
registry's detection bounds (``pack_entries(DETECT_KINDS)``).
"""

from __future__ import annotations

from typing import Any

from edgeinfer.data.packfile import ParityPack, make_pack
from edgeinfer.parity.tolerances import DETECT_KINDS, pack_entries
from edgeinfer.progress import Progress


def build_detect_pack(source: Any, data: str, *, weights: str | None = None,
                      limit: int | None = None, progress: Progress | None = None
                      ) -> ParityPack:
    """Run the detector source on ``data`` (``builtin:detect``: convert's gate frames, or a
    photo folder) and pack its detections."""
    from edgeinfer.converter.detect_convert import load_detector
    from edgeinfer.converter.detect_data import detect_data

    say = progress or (lambda _m: None)
    src = load_detector(source, weights)
    frames, description = detect_data(data, src.spec, limit)
    say(f"running {source} (torch pipeline) on {len(frames)} frames ({description})")
    dets = [src.framework(f.image) for f in frames]
    prov = dict(src.provenance) | {"runner": f"{source} (torch pipeline)"}
    return make_pack(src.spec, src.labels, [f.image for f in frames], None, source=prov,
                     data_name=description,
                     ids=[f"{f.aspect}-{i:04d}" for i, f in enumerate(frames)],
                     tolerances=pack_entries(DETECT_KINDS),
                     detection=src.detection.to_dict(), detections=dets)
