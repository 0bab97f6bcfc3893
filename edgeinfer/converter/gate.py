"""The parity gate: an artifact is written only if it predicts what its references predict.

Every format goes through :func:`gate`: the candidate's probabilities on the real parity
frames are compared (with :func:`edgeinfer.parity.stats.compare`) against the framework
and, for quantised or TFLite artifacts, against the fp32 ONNX artifact too, each with the
registry's tolerance for the candidate's (format, dtype). Nothing here builds artifacts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgeinfer.errors import ParityError
from edgeinfer.parity.certify import FAIL, certify
from edgeinfer.parity.frames import FrameSet
from edgeinfer.parity.stats import Comparison, compare
from edgeinfer.parity.tolerances import tolerance

Progress = Callable[[str], None]


@dataclass
class GateResult:
    """The comparisons of one candidate; ``primary`` is the one against the framework."""

    primary: Comparison
    others: dict[str, Comparison]
    accuracies: dict[str, Any]  # + certified, certification (parity.certify)

    def to_parity(self, data: str) -> dict[str, Any]:
        """The ``edgeinfer.parity`` metadata entry."""
        return {"data": data, **self.primary.to_dict(),
                **{k: c.to_dict() for k, c in self.others.items()}, **self.accuracies}


def accuracies(frames: FrameSet, source_probs: np.ndarray,
               artifact_probs: np.ndarray) -> dict[str, float]:
    """Source and artifact accuracy on labelled parity frames (empty without labels)."""
    if frames.labels is None:
        return {}
    return {"accuracy_source": float((source_probs.argmax(-1) == frames.labels).mean()),
            "accuracy_artifact": float((artifact_probs.argmax(-1) == frames.labels).mean())}


def gate(candidate: np.ndarray, tag: str, fmt: str, dtype: str, frames: FrameSet,
         references: dict[str, np.ndarray], say: Progress,
         data_note: str | None = None) -> GateResult:
    """Judge ``candidate`` against each reference (the first is the framework), each with
    the one certification rule (:func:`edgeinfer.parity.certify.certify`); ``data_note``
    qualifies the word when the frames are not the user's (``not your data``).

    Raises :class:`ParityError` naming every failed comparison; the caller writes nothing.
    """
    tol = tolerance(fmt, dtype)
    cmps = {name: compare(ref, candidate, tol, reference=name, target=tag)
            for name, ref in references.items()}
    certs = {k: certify(c, data_note) for k, c in cmps.items()}
    for k, c in cmps.items():
        cert = certs[k]
        say(c.summary(cert.word) + (f" - {cert.reason}" if cert.base != FAIL and cert.reason
                                    else ""))
    failed = [c for k, c in cmps.items() if certs[k].base == FAIL]
    if failed:
        raise ParityError("artifact not written: " + "; ".join(c.summary() for c in failed))
    first, *rest = cmps
    src, cert = references[first], certs[first]
    return GateResult(cmps[first], {f"vs_{k}": cmps[k] for k in rest},
                      accuracies(frames, src, candidate)
                      | {"certified": cert.certified, "verdict": cert.word,
                         "certification": cert.reason or "certified"}
                      | ({"data_note": data_note} if data_note else {}))
