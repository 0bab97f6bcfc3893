"""Derive, then prove, beyond Hugging Face (issue 25): albumentations and Keras run for real;
timm through spec_from/oracle.py, a Pillow oracle written from timm's
transforms_imagenet_eval (timm does not import here), with real pretrained_cfg values read
from huggingface/pytorch-image-models (tools/spec_from_timm_cfgs.json)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from edgeinfer import SpecError
from edgeinfer.converter.spec_from import derive, oracle
from edgeinfer.converter.spec_from import proof as P
from edgeinfer.converter.spec_from import timm as _timm
from edgeinfer.parity.tolerances import tolerance

TOL = tolerance("spec_from", "proof")
CFGS = json.loads((Path(__file__).resolve().parents[2] / "tools" /
                   "spec_from_timm_cfgs.json").read_text())["cfgs"]


def _cfg(tag: str) -> dict:
    return {k: v for k, v in CFGS[tag].items() if k != "file"}


@pytest.mark.parametrize("tag", ["convnext_tiny.in12k_ft_in1k", "dm_nfnet_f0.dm_in1k",
                                 "vgg11.tv_in1k"])
def test_timm_cfgs_are_proven_against_the_oracle(tag: str) -> None:
    d = derive(_cfg(tag))  # center/bicubic, squash/bicubic, center/bilinear
    assert d.proof["proven"] and "oracle of timm" in d.proof["library"]
    assert d.proof["max_grey_levels"] <= TOL.max_abs


def test_a_timm_cfg_without_interpolation_is_bicubic_as_timm_resolves_it() -> None:
    """timm's resolve_data_config defaults to 'bicubic'; the code before read 'bilinear':
    accepted silently, measured outside the bounds by the oracle (fails before the fix)."""
    cfg = _cfg("convit_tiny.fb_in1k")
    assert "interpolation" not in cfg
    assert derive(cfg).spec.interpolation == "cubic"
    old = _timm.derive(cfg | {"interpolation": "bilinear"})  # what the old default gave
    got, ref = P.grey_levels(old.spec, oracle.timm_eval(cfg), list(P.bundled_frames()))
    mx, _ = P.figure(old.spec, got, ref)
    assert mx > TOL.max_abs


def test_timm_proof_refuses_a_spec_the_oracle_contradicts() -> None:
    """The proof itself: a spec read with the wrong crop_pct is refused with the figure."""
    cfg = _cfg("convnext_tiny.in12k_ft_in1k")
    wrong = replace(_timm.derive(cfg | {"crop_pct": 0.875}), pipeline=cfg)
    with pytest.raises(SpecError, match=r"timm resize/crop: the derived spec differs from "
                       r"pretrained_cfg's own output \(Pillow oracle of timm"):
        P.prove(wrong)


def test_albumentations_is_run_and_proven() -> None:
    A = pytest.importorskip("albumentations")
    compose = A.Compose([A.SmallestMaxSize(max_size=256), A.CenterCrop(224, 224),
                         A.Normalize()])
    d = derive(compose)
    assert d.proof["library"].startswith("albumentations") and d.proof["proven"]
    assert d.proof["max_grey_levels"] <= TOL.max_abs  # OpenCV's fixed-point uint8 resize


def test_albumentations_normalisation_mistake_names_the_step() -> None:
    A = pytest.importorskip("albumentations")
    compose = A.Compose([A.Resize(224, 224), A.Normalize()])
    good = derive(compose)
    wrong = replace(good, spec=replace(good.spec, std=(0.5, 0.5, 0.5)))
    with pytest.raises(SpecError, match="albumentations normalisation"):
        P.prove(wrong)


@pytest.mark.slow  # loads Keras (~2 s on two shared cores)
def test_keras_lifted_layers_are_run_and_proven() -> None:
    import keras

    from tests.keras.conftest import KERAS_FILE

    d = derive(keras.saving.load_model(KERAS_FILE, compile=False))
    assert d.proof["library"].startswith("keras") and d.proof["proven"]
    assert d.proof["max_grey_levels"] <= 0.01
