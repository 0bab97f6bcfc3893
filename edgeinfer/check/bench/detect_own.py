"""The framework's own pipeline for an edgeinfer detector artifact (``edgeinfer bench
det.onnx`` / ``det.tflite``, issue 28 point 4), and the real frames it is timed on.

The reference is what the detection gate compares the artifact with and what a torch user
runs: the source module named in the artifact's provenance, loaded as ``convert`` loaded
it (:func:`edgeinfer.converter.detect_convert.load_detector`), behind the spec's
numpy/OpenCV letterbox, with its own torch NMS (``net.postprocess``) and the fit's inverse
(``DetectorSource.framework``). torch's intra-op threads are set to the thread count
timed, as the artifact's runtime session is. The frames: the gate's kind (bundled photos
with Fashion-MNIST test items pasted), one per aspect, so the letterbox is exercised in
both directions and not at all.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgeinfer.errors import EdgeInferError
from edgeinfer.parity.boxes import BoxComparison, compare_boxes

#: the long side of the frames timed: a VGA camera frame's (the landscape one is 480x640,
#: a TFLite detector's default ``frame`` signature; the others take the host letterbox)
LONG_SIDE = 640


def own_frames() -> dict[str, np.ndarray]:
    """One BGR frame per aspect (portrait 3:4, landscape 4:3, square), long side 640, from
    the gate's frames (real photos with real objects pasted): of each aspect's 640 frames
    the one with the most objects, so every timed frame has boxes to find and suppress."""
    from edgeinfer.converter.detect_frames import gate_frames

    best: dict[str, Any] = {}
    for f in gate_frames():
        if max(f.image.shape[:2]) == LONG_SIDE and (
                f.aspect not in best or len(f.boxes) > len(best[f.aspect].boxes)):
            best[f.aspect] = f
    return {f"{f.aspect} {f.image.shape[0]}x{f.image.shape[1]}": f.image
            for f in best.values()}


class TorchPipeline:
    """frame -> (boxes, scores, classes) through the torch source of a detector artifact."""

    name = "torch"

    def __init__(self, source: Any, threads: int, weights: str | None = None) -> None:
        import torch

        from edgeinfer.converter.detect_convert import load_detector

        torch.set_num_threads(threads)
        self.src = load_detector(source, weights)

    def __call__(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.src.framework(frame)

    def compare(self, detector: Any, frame: np.ndarray) -> BoxComparison:
        """The artifact's detections vs this pipeline's on one frame, IoU >= 0.5."""
        return compare_boxes(*detector.arrays(frame), *self.src.framework(frame))


def torch_reference(detector: Any, threads: int, notes: list[str]) -> TorchPipeline | None:
    """The torch pipeline an artifact was converted from, or None with a note saying why
    (not a torch source, the source directory or torch missing): never silently."""
    from pathlib import Path

    from edgeinfer.converter.detect_convert import detector_dir

    prov = getattr(detector, "metadata", None)
    prov = prov.provenance if prov is not None else {}
    source = prov.get("source")
    if prov.get("framework") != "torch" or source is None or detector_dir(source) is None:
        note = (f"no framework pipeline: the artifact's source {source!r} is not a torch "
                "detector directory here")
        if note not in notes:
            notes.append(note)
        return None
    weights = prov.get("weights")
    try:
        return TorchPipeline(source, threads,
                             weights if weights and Path(weights).is_file() else None)
    except (ImportError, EdgeInferError) as e:
        note = f"torch baseline skipped: {' '.join(str(e).split())[:200]}"
        if note not in notes:
            notes.append(note)
        return None
