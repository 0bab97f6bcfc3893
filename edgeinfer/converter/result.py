"""What ``convert`` returns, classifier or detector: kept apart from ``api`` so the detector's
conversion (``detect_convert``, which ``api`` dispatches to) can build one without a cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from edgeinfer.artifact import ArtifactMetadata
from edgeinfer.parity.stats import Comparison


@dataclass
class ConversionResult:
    """The artifact written, its metadata, the headline comparison (None for a detector:
    its figures are the metadata's ``parity`` entry) and the source's lint warnings."""

    path: Path
    metadata: ArtifactMetadata
    parity: Comparison | None
    lint_warnings: list[str] = field(default_factory=list)

    @property
    def bn_left(self) -> int:
        return int(self.metadata.provenance.get("batchnorm_left", -1))
