"""Malformed pipeline configs are one-line SpecErrors naming the field, never a traceback
(issue 25: an HF config with do_center_crop but no crop_size raised TypeError, a timm
input_size of two values ValueError, an albumentations Resize without height KeyError)."""

from __future__ import annotations

import json

import pytest

from edgeinfer.cli import main
from edgeinfer.converter.spec_from import derive
from edgeinfer.errors import SpecError

HF = {"image_processor_type": "ViTImageProcessor", "do_resize": True,
      "size": {"shortest_edge": 256}, "do_center_crop": True, "do_rescale": True,
      "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": [0.5] * 3,
      "image_std": [0.5] * 3}
TIMM = {"input_size": [224, 224], "interpolation": "bicubic", "mean": [0.5] * 3,
        "std": [0.5] * 3, "crop_pct": 0.875}
ALB = {"__version__": "2.0.8", "transform": {
    "__class_fullname__": "Compose", "p": 1.0,
    "transforms": [{"__class_fullname__": "Resize", "width": 224, "p": 1.0}]}}

CASES = [(HF, "crop_size"), (TIMM, "input_size"), (ALB, "'height' is missing")]


@pytest.mark.parametrize("cfg,needle", CASES)
def test_malformed_config_is_a_spec_error_naming_the_field(tmp_path, cfg, needle):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    with pytest.raises(SpecError, match=needle) as e:
        derive(path)
    assert "\n" not in str(e.value)
    with pytest.raises(SpecError, match=needle):
        derive(cfg)


@pytest.mark.parametrize("cfg,needle", CASES[:1])
def test_cli_refuses_in_one_line(tmp_path, capsys, cfg, needle):
    path = tmp_path / "preprocessor_config.json"
    path.write_text(json.dumps(cfg))
    rc = main(["convert", "fashion", "-o", str(tmp_path / "m.onnx"), "--spec-from", str(path)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err and needle in err
    assert len([ln for ln in err.splitlines() if ln.startswith("edgeinfer: error")]) == 1
