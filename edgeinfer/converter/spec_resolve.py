"""Which spec a command uses: one function, one precedence (as timm's ``resolve_data_config``).

Why one place: ``convert``, ``check``, ``pack``, ``audit`` and ``doctor`` each once chose
the spec their own way (an explicit spec, a derived one, a bundled model's file, an
artifact's stored spec, a Keras lift), and two of them disagreed on a Keras model.

The precedence, first match wins:

1. ``spec=``/``--spec``: a PreprocessSpec, its dict, JSON text or a JSON file (explicit);
2. ``spec_from=``/``--spec-from`` or ``spec="auto"``: read from the training pipeline by
   :mod:`edgeinfer.converter.spec_from` (derived; a bundled model keeps its own file);
3. the bundled reference model's ``spec.json`` (bundled);
4. ``fallback``: the spec an artifact carries, when a command judges an artifact (artifact);
5. otherwise a ConversionError that says what to pass.

Two faces of one spec come out of a conversion: the spec the *framework* model is fed (what
this function returns: the runner and the audit use it) and the spec the *artifact* bakes,
which differs only when a frontend lifted preprocessing layers out of the model
(:func:`artifact_spec`; the reverse, for an artifact's provenance, is
:func:`edgeinfer.spec.framework_spec`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeinfer.converter.sources.reference import REFERENCE_MODELS
from edgeinfer.errors import ConversionError, SpecError
from edgeinfer.spec import PreprocessSpec, resolve_spec


@dataclass(frozen=True)
class ResolvedSpec:
    """The spec a command runs the framework model with, and where it came from."""

    spec: PreprocessSpec
    origin: str  # explicit | derived | bundled | artifact
    derived: Any = None  # spec_from.Derived when origin == "derived"


def resolve(source: Any, spec: Any = None, *, spec_from: Any = None,
            fallback: PreprocessSpec | None = None, frame_color: str = "BGR") -> ResolvedSpec:
    """The spec for ``source`` by the precedence above."""
    auto = isinstance(spec, str) and spec == "auto"
    if spec_from is not None and spec is not None and not auto:
        raise SpecError("give spec= or spec_from=, not both")
    ref = REFERENCE_MODELS.get(source) if isinstance(source, str) else None
    if spec is not None and not auto:
        return ResolvedSpec(resolve_spec(spec), "explicit")
    if spec_from is not None or (auto and ref is None):
        d = _derive(source, spec_from, frame_color)
        # A Keras source gets its base spec: its frontend lifts the preprocessing layers
        # itself (one code path), so lifting here too would apply them twice.
        base = PreprocessSpec.from_dict(d.read["base_spec"]) if d.source == "keras" else d.spec
        return ResolvedSpec(base, "derived", d)
    if ref is not None:
        return ResolvedSpec(resolve_spec(ref.spec_path), "bundled")
    if fallback is not None:
        return ResolvedSpec(fallback, "artifact")
    raise ConversionError("a spec is needed: pass spec= / --spec (a PreprocessSpec or a JSON "
                          "file) describing the frame and the model input")


def _derive(source: Any, spec_from: Any, frame_color: str) -> Any:
    """``spec_from`` names the pipeline; ``spec="auto"`` reads it from the source itself (a
    timm model's ``pretrained_cfg``, a Keras model's layers, a model folder's
    ``preprocessor_config.json``)."""
    from edgeinfer.converter.spec_from import derive

    target = spec_from if spec_from is not None else source
    if spec_from is None and isinstance(source, (str, os.PathLike)) and not Path(
            source).is_dir():
        raise SpecError(f"spec='auto' cannot read preprocessing from {source}: pass "
                        "spec_from= (--spec-from) with the training pipeline's config")
    try:
        return derive(target, frame_color=frame_color)
    except SpecError as e:
        if spec_from is None and str(e).startswith("cannot derive a spec from a"):
            raise SpecError(f"spec='auto': the {type(source).__name__} carries no "
                            "preprocessing config; pass spec_from= (--spec-from) with the "
                            "training pipeline") from None
        raise


def artifact_spec(source: Any, given: PreprocessSpec) -> PreprocessSpec:
    """The spec the artifact bakes: the frontend's lifted spec (Keras Rescaling /
    Normalization moved out of the model into the prefix), else the given one."""
    return getattr(source, "spec", None) or given
