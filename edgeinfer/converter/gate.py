"""The parity gate: an artifact is written only if it predicts what its references predict.

Every format goes through :func:`gate`: the candidate's probabilities on the real parity
frames are compared (with :func:`edgeinfer.parity.stats.compare`) against the framework
and, for quantised or TFLite artifacts, against the fp32 ONNX artifact too, each with the
registry's tolerance for the candidate's (format, dtype). Nothing here builds artifacts.
The fp32 ONNX artifact is judged stage by stage (:mod:`edgeinfer.parity.stages`:
preprocessing in grey levels, model with the fp32 bound); its end-to-end figure against the
framework is then reported, not judged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeinfer.data.frames import FrameSet
from edgeinfer.errors import ParityError
from edgeinfer.parity.certify import FAIL, certify
from edgeinfer.parity.stages import END_TO_END, StageCheck, by_stage, failures, stage_checks
from edgeinfer.parity.stats import Comparison, compare
from edgeinfer.parity.tolerances import Tolerance, tolerance
from edgeinfer.progress import Progress


@dataclass
class GateResult:
    """The comparisons of one candidate; ``primary`` is the one against the framework."""

    primary: Comparison
    others: dict[str, Comparison]
    accuracies: dict[str, Any]  # + certified, certification (parity.certify)
    stages: list[StageCheck] = field(default_factory=list)

    def to_parity(self, data: str) -> dict[str, Any]:
        """The ``edgeinfer.parity`` metadata entry."""
        return {"data": data, **self.primary.to_dict(),
                **{k: c.to_dict() for k, c in self.others.items()}, **self.accuracies,
                **({"stages": [s.to_dict() for s in self.stages]} if self.stages else {})}


def accuracies(frames: FrameSet, source_probs: np.ndarray,
               artifact_probs: np.ndarray) -> dict[str, float]:
    """Source and artifact accuracy on labelled parity frames (empty without labels)."""
    if frames.labels is None:
        return {}
    return {"accuracy_source": float((source_probs.argmax(-1) == frames.labels).mean()),
            "accuracy_artifact": float((artifact_probs.argmax(-1) == frames.labels).mean())}


def gate(candidate: np.ndarray, tag: str, fmt: str, dtype: str, frames: FrameSet,
         references: dict[str, np.ndarray], say: Progress,
         data_note: str | None = None, stages: Sequence[StageCheck] = (),
         tol: Tolerance | None = None) -> GateResult:
    """Judge ``candidate`` against each reference (the first is the framework), each with
    the one certification rule (:func:`edgeinfer.parity.certify.certify`); ``data_note``
    qualifies the word when the frames are not the user's (``not your data``).

    With ``stages`` (preprocessing and model, :mod:`edgeinfer.parity.stages`) those are
    judged instead of the end-to-end comparisons (the framework's, and fp32 ONNX's for a
    TFLite artifact), which are reported: they add the network's sensitivity to the
    rounding of the pixels, a property of the model. The model stage becomes the primary
    comparison and the framework's end-to-end one ``vs_end_to_end``.

    ``tol``: the registry's tolerance with an int8 target the user asked for
    (:class:`edgeinfer.parity.certify.Int8Target`); default the registry's own.

    Raises :class:`ParityError` naming every failed comparison (and the stage that broke);
    the caller writes nothing.
    """
    tol = tol or tolerance(fmt, dtype)
    cmps = {name: compare(ref, candidate, tol, reference=name, target=tag)
            for name, ref in references.items()}
    first, *rest = cmps
    model = by_stage(stages)  # the one rule: parity.stages, as check and verify
    certs = {k: certify(c, data_note) for k, c in cmps.items()}
    # The stages already said the framework's end-to-end figure: said once, not twice.
    said = {first} if any(s.stage == END_TO_END for s in stages) else set()
    for k, c in cmps.items():
        cert = certs[k]
        if model is not None:
            if k not in said:
                say(f"end-to-end (reported, judged by stage): {c.summary('-')}")
            continue
        say(c.summary(cert.word) + (f" - {cert.reason}" if cert.base != FAIL and cert.reason
                                    else ""))
    failed = [c.summary() for k, c in cmps.items()
              if certs[k].base == FAIL and model is None]
    failed = failures(stages) + failed
    if failed:
        raise ParityError("artifact not written: " + "; ".join(failed))
    src = references[first]
    if model is not None:
        cert = certify(model, data_note)
        return GateResult(model, {"vs_end_to_end": cmps[first]}
                          | {f"vs_{k}": cmps[k] for k in rest},
                          accuracies(frames, src, candidate)
                          | {"certified": cert.certified, "verdict": cert.word,
                             "certification": cert.reason or "certified"}
                          | ({"data_note": data_note} if data_note else {}), list(stages))
    cert = certs[first]
    return GateResult(cmps[first], {f"vs_{k}": cmps[k] for k in rest},
                      accuracies(frames, src, candidate)
                      | {"certified": cert.certified, "verdict": cert.word,
                         "certification": cert.reason or "certified"}
                      | ({"data_note": data_note} if data_note else {}))


def artifact_stages(model: bytes, source: Any, runner: Any, frames: FrameSet,
                    source_probs: np.ndarray, say: Progress, fmt: str = "onnx",
                    dtype: str = "fp32", target: str = "onnx-fp32") -> list[StageCheck]:
    """Preprocessing, model and end-to-end stages of a float artifact (ONNX, or TFLite
    fp32/fp16 whose prefix stays float), judged with the bound of its (format, dtype).

    None when a frontend lifted preprocessing layers out of the model into the spec (Keras
    Rescaling/Normalization): the framework model then expects other pixels than the
    artifact's core, so only the end-to-end comparison can be judged.
    """
    if source.spec is not None or not hasattr(runner, "model"):
        return []
    return stage_checks(model, runner.spec, frames.frames, runner, source_probs, fmt, dtype,
                        target, framework=source.framework, say=say)
