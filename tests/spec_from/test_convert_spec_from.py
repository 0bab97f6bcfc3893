"""``convert(spec="auto" | spec_from=...)`` and ``--spec-from``: the derived spec is what the
artifact bakes, and its source is in the provenance; what cannot be expressed exits 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from edgeinfer import SpecError, spec_from
from edgeinfer.cli import main
from edgeinfer.converter.api import convert

from .test_timm_torchvision import RESNET50_A1


class TinyNet(nn.Module):
    """A small CNN carrying a timm-style evaluation config (resnet50.a1_in1k's)."""

    pretrained_cfg = RESNET50_A1

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=4), nn.BatchNorm2d(8), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
        self.net[1].running_mean.uniform_(-1, 1)
        self.net[1].running_var.uniform_(0.5, 2.0)
        self.net[1].num_batches_tracked += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def test_spec_auto_reads_the_models_config(tmp_path: Path) -> None:
    r = convert(TinyNet(), tmp_path / "a.onnx", spec="auto", parity_data="builtin:photos")
    assert r.metadata.spec == spec_from(RESNET50_A1)
    derived = r.metadata.provenance["spec_derived"]
    assert derived["source"] == "timm" and derived["read"]["crop_pct"] == 0.95
    proof = derived["proof"]  # proven again on the parity frames (issue 25)
    assert proof["proven"] and proof["frames_from"] == "parity frames"
    assert proof["max_grey_levels"] <= 1.5 and "oracle of timm" in proof["library"]
    assert r.parity.top1_agreement == 1.0


def test_spec_auto_without_a_config_is_refused() -> None:
    with pytest.raises(SpecError, match="spec_from"):
        convert(nn.Sequential(nn.Flatten(), nn.LazyLinear(2)), "x.onnx", spec="auto")
    with pytest.raises(SpecError, match="spec_from"):
        convert("models/does_not_exist.onnx", "x.onnx", spec="auto")


def test_spec_auto_on_a_bundled_model_is_its_own_spec() -> None:
    from edgeinfer.converter.spec_resolve import resolve
    from edgeinfer.spec import resolve_spec

    r = resolve("fashion", "auto")
    assert r.origin == "bundled" and r.derived is None
    assert r.spec == resolve_spec("models/fashion/spec.json")


def test_cli_spec_from_config_file(tmp_path: Path, capsys) -> None:
    T = pytest.importorskip("transformers")
    T.ConvNextImageProcessorPil(size={"shortest_edge": 64}, resample=3).save_pretrained(
        tmp_path)
    factory = tmp_path / "tiny.py"
    factory.write_text("from tests.spec_from.test_convert_spec_from import TinyNet\n"
                       "def build():\n    return TinyNet()\n")
    out = tmp_path / "m.onnx"
    assert main(["convert", f"{factory}:build", "-o", str(out), "--spec-from",
                 str(tmp_path / "preprocessor_config.json"), "--parity-data",
                 "builtin:photos", "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["spec"]["size"] == [64, 64] and meta["spec"]["resize_shorter"] == 73
    assert meta["provenance"]["spec_derived"]["source"] == "hf"


def test_cli_unexpressible_config_is_one_line_exit_2(tmp_path: Path, capsys) -> None:
    cfg = tmp_path / "aug.json"
    cfg.write_text(json.dumps(RESNET50_A1 | {"interpolation": "random"}))
    assert main(["convert", "x.py:build", "-o", str(tmp_path / "m.onnx"),
                 "--spec-from", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "interpolation='random'" in err and len(err.splitlines()) == 1


@pytest.mark.slow  # scripts/test --full (minutes on two shared cores)
def test_stretch_crop_converts_to_onnx_and_tflite_and_passes_by_stage(tmp_path: Path) -> None:
    """timm squash with crop_pct 0.9 (stretch to 373x373, centre 336x336): baked into the
    ONNX prefix and the TFLite 'frame' signature (fixed 640x427 frames: the static
    antialiased resize), each judged stage by stage on the photos."""
    from .test_timm_torchvision import EVA_L_336

    class Squash(TinyNet):
        pretrained_cfg = EVA_L_336 | {"crop_pct": 0.9}

    for out, kw in ((tmp_path / "s.onnx", {}), (tmp_path / "s.tflite",
                                                 {"frame_size": (427, 640)})):
        r = convert(Squash(), out, spec="auto", parity_data="builtin:photos", **kw)
        assert (r.metadata.spec.resize, r.metadata.spec.crop_from) == ("stretch_crop",
                                                                       (373, 373))
        stages = {s["stage"]: s for s in r.metadata.parity["stages"]}
        assert stages["preprocessing"]["passed"], stages["preprocessing"]
        assert stages["preprocessing"]["max_abs"] < 0.05, stages["preprocessing"]
        assert stages["model"]["passed"] and r.parity.top1_agreement == 1.0
