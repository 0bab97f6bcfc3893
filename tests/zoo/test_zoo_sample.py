"""A fast sample of the zoo (tools/zoo.py runs all of tools/zoo_models.ARCHS; its table is
docs/zoo.md): architectures no one here wrote go through ``edgeinfer.convert(nn.Module)``
and pass the stage gate. ViT: attention and LayerNorm, no BatchNorm. MobileViT: MobileNet
blocks with BatchNorm calibrated on real photos, attention, a 256 px input."""

from __future__ import annotations

import numpy as np
import pytest

from edgeinfer.converter.api import convert
from edgeinfer.data.frames import load_frames
from edgeinfer.parity.runners import ArtifactRunner, TorchRunner
from edgeinfer.parity.tolerances import tolerance
from tests.zoo.models import zoo_models


@pytest.mark.parametrize("name", ["vit", "mobilevit_256"])
@pytest.mark.slow  # scripts/test --full (minutes on two shared cores)
def test_zoo_architecture_converts_and_passes_by_stage(name, tmp_path):
    zm = zoo_models()
    arch = zm.BY_NAME[name]
    spec = arch.spec()
    cal = load_frames("builtin:photo-calibration", spec, limit=32).frames
    module = zm.built(arch, cal)
    res = convert(module, tmp_path / f"{name}.onnx", spec=spec, parity_data="builtin:photos")
    assert res.bn_left == 0
    stages = {s["stage"]: s for s in res.metadata.parity["stages"]}
    assert stages["preprocessing"]["passed"] and stages["model"]["passed"]
    assert stages["preprocessing"]["max_abs"] < 0.05  # float rounding, not a mistake
    # the artifact on a frame of another size agrees with torch on the reference pixels
    frames = load_frames("builtin:photos", spec).frames[:3]
    ref = TorchRunner(module, spec, True).run(frames)
    out = ArtifactRunner(str(res.path)).run(frames)
    assert (ref.argmax(-1) == out.argmax(-1)).all()
    assert np.isfinite(out).all() and stages["model"]["max_abs"] <= tolerance("onnx").max_abs
