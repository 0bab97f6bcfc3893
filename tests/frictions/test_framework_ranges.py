"""Issue 24 part 4: the extras declare ranges (a user's own torch/TensorFlow stays), this
project's exact pins live in constraints.txt, and a framework below the range is refused in
one line before any export starts.

Why these tests: the floors exist twice (pyproject's extras and the import-time check) and
the pins twice (constraints.txt and the ranges they must fall in); a drift between them is
silent until a user's install or conversion breaks.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from edgeinfer.converter.sources.frameworks import FLOORS, require_version, version_tuple
from edgeinfer.errors import MissingExtraError

REPO = Path(__file__).resolve().parents[2]


def _extras() -> dict[str, list[str]]:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())
    return data["project"]["optional-dependencies"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip()] = version.strip()
    return pins


def _floor(req: list[str], name: str) -> str | None:
    for r in req:
        m = re.fullmatch(rf"{re.escape(name)}>=([\d.]+)", r.replace(" ", ""))
        if m:
            return m.group(1)
    return None


def test_extras_declare_ranges_with_the_checked_floors():
    extras = _extras()
    assert _floor(extras["convert"], "torch") == FLOORS["torch"][0]
    assert _floor(extras["keras"], "keras") == FLOORS["keras"][0]
    every = [r for reqs in extras.values() for r in reqs]
    assert not [r for r in every if "==" in r and not r.startswith("mutmut")], \
        "exact pins belong in constraints.txt"
    # Neither TensorFlow distribution is named: either would sit beside a user's other one.
    assert not [r for r in every if re.match(r"tensorflow(-cpu)?\b", r)]


def test_constraints_pin_inside_the_ranges_and_setup_uses_them():
    pins = _pins()
    assert pins["torch"] == "2.13.0"  # the local CPU wheel; any other pulls CUDA builds
    for module in ("torch", "keras"):
        assert version_tuple(pins[module]) >= version_tuple(FLOORS[module][0])
    assert version_tuple(pins["tensorflow-cpu"]) >= version_tuple(FLOORS["tensorflow"][0])
    setup = (REPO / "scripts" / "setup").read_text()
    assert "-c constraints.txt" in setup and "constraints.txt scripts/setup" in setup


def test_version_tuple_ignores_local_labels_and_suffixes():
    assert version_tuple("2.13.0+cpu") == (2, 13, 0)
    assert version_tuple("2.6.0rc1") == (2, 6, 0)
    assert version_tuple("3.10.0.dev2025") == (3, 10, 0)
    assert version_tuple("2.10") > version_tuple("2.6")  # numbers, not strings


def test_below_the_floor_is_one_line_naming_version_and_range():
    require_version("torch", "2.6.0", "converting torch models")  # the floor itself passes
    with pytest.raises(MissingExtraError) as e:
        require_version("torch", "2.5.1+cu121", "converting torch models")
    msg = str(e.value)
    assert "\n" not in msg and "torch 2.5.1+cu121 is installed" in msg and "torch>=2.6" in msg


OLD_TORCH = textwrap.dedent("""
    import torch
    torch.__version__ = "2.5.1"
""")
FACTORY = textwrap.dedent("""
    from torch import nn

    def build():
        return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(4, 10))
""")


def test_cli_refuses_an_old_torch_before_exporting(tmp_path):
    """A user's torch 2.5 (stood in for by a patched version string): one line, exit 2."""
    (tmp_path / "sitecustomize.py").write_text(OLD_TORCH)
    (tmp_path / "mymodel.py").write_text(FACTORY)
    (tmp_path / "spec.json").write_text('{"size": [28, 28], "model_color": "GRAY"}')
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {
        "PYTHONPATH": str(tmp_path)}
    p = subprocess.run([str(Path(sys.executable).parent / "edgeinfer"), "convert",
                        "mymodel.py:build", "--spec", "spec.json", "-o", "m.onnx"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240,
                       check=False)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("edgeinfer: error:")]
    assert len(lines) == 1 and "torch 2.5.1 is installed" in lines[0], p.stderr[-2000:]
    assert "torch>=2.6" in lines[0] and not (tmp_path / "m.onnx").exists()


def test_keras_paths_refuse_old_keras_and_name_a_tensorflow_to_install(monkeypatch):
    import importlib.util

    import keras

    from edgeinfer.converter.sources import from_keras
    from edgeinfer.spec import PreprocessSpec

    spec = PreprocessSpec(size=(28, 28), model_color="GRAY")
    monkeypatch.setattr(keras, "__version__", "3.5.0")
    with pytest.raises(MissingExtraError, match=r"keras>=3\.6; keras 3\.5\.0 is installed"):
        from_keras.keras_source(object(), spec)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "tensorflow" else real(name, *a))
    with pytest.raises(MissingExtraError, match=r"pip install 'tensorflow-cpu>=2\.16'"):
        from_keras.keras_source(object(), spec)
