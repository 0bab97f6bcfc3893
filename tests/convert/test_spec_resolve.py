"""The one spec precedence (converter.spec_resolve): explicit > derived > bundled > artifact."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeinfer.converter.spec_resolve import artifact_spec, resolve
from edgeinfer.errors import ConversionError, SpecError
from edgeinfer.spec import PreprocessSpec, framework_spec, resolve_spec

FASHION = resolve_spec(Path(__file__).resolve().parents[2] / "models/fashion/spec.json")
OTHER = PreprocessSpec(size=(32, 32), model_color="GRAY")


def test_explicit_beats_bundled_and_artifact():
    r = resolve("fashion", OTHER.to_dict(), fallback=FASHION)
    assert (r.spec, r.origin) == (OTHER, "explicit")


def test_bundled_beats_artifact():
    r = resolve("fashion", None, fallback=OTHER)
    assert (r.spec, r.origin) == (FASHION, "bundled")


def test_artifact_is_the_last_resort(tmp_path):
    r = resolve(str(tmp_path / "model.onnx"), None, fallback=OTHER)
    assert (r.spec, r.origin) == (OTHER, "artifact")
    with pytest.raises(ConversionError, match="a spec is needed"):
        resolve(str(tmp_path / "model.onnx"))


def test_derived_from_a_pipeline_config(tmp_path):
    cfg = tmp_path / "preprocessor_config.json"
    cfg.write_text(json.dumps({
        "image_processor_type": "ViTImageProcessor", "do_resize": True,
        "size": {"height": 224, "width": 224}, "resample": 2, "do_rescale": True,
        "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5]}))
    r = resolve("fashion", None, spec_from=cfg)
    assert r.origin == "derived" and r.derived is not None and r.spec.size == (224, 224)
    with pytest.raises(SpecError, match="not both"):
        resolve("fashion", OTHER, spec_from=cfg)


def test_the_two_faces_of_a_lifted_spec():
    class Lifted:
        spec = OTHER
        provenance = {"spec_given": FASHION.to_dict()}

    class Plain:
        spec = None
        provenance: dict = {}

    assert artifact_spec(Lifted(), FASHION) == OTHER
    assert artifact_spec(Plain(), FASHION) == FASHION
    assert framework_spec(Lifted.provenance, OTHER) == FASHION
    assert framework_spec({}, OTHER) == OTHER
