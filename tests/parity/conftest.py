"""The sensitive network the stage tests share (built and converted once per session)."""

from __future__ import annotations

import pytest

from edgeinfer.converter.api import convert
from edgeinfer.data.frames import load_frames
from edgeinfer.parity.runners import TorchRunner
from tests.zoo.models import zoo_models


@pytest.fixture(scope="session")
def sensitive(tmp_path_factory):
    """(module, spec, conversion, frames, torch runner, torch probs on the reference)."""
    zm = zoo_models()
    arch = zm.BY_NAME["mobilenet_v2"]
    spec = arch.spec()
    cal = load_frames("builtin:photo-calibration", spec, limit=64).frames
    module = zm.built(arch, cal)
    out = tmp_path_factory.mktemp("stages") / "mnv2.onnx"
    res = convert(module, out, spec=spec, parity_data="builtin:photos")
    frames = load_frames("builtin:photos", spec).frames
    runner = TorchRunner(module, spec, True)
    return module, spec, res, frames, runner, runner.run(frames)
