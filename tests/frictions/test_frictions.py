"""The newcomer's frictions of issue 9, each reproduced first and kept fixed here.

Every test drives the real command line (a subprocess where the process matters: the
current folder, a missing extra, a FIFO) or the real API, never a stub of the converter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

import edgeinfer
from edgeinfer import ConfigError, ImageDecodeError, ModelError, Predictor
from edgeinfer.data.datasets import load_fashion_mnist
from edgeinfer.data.frames import load_frames
from edgeinfer.runtime.image import load_image
from edgeinfer.spec import PreprocessSpec

REPO = Path(__file__).resolve().parents[2]
PY = sys.executable
TIMEOUT = 240


def _cli(*args: str, cwd: Path, env: dict | None = None,
         timeout: int = TIMEOUT) -> subprocess.CompletedProcess:
    """``edgeinfer ARGS`` the way a user runs it: the console script, in ``cwd``."""
    script = Path(PY).parent / "edgeinfer"
    e = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | (env or {})
    return subprocess.run([str(script), *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=timeout, check=False)


def _one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert "Traceback" not in p.stderr, p.stderr[-2000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("edgeinfer: error:")]
    assert len(lines) == 1, p.stderr[-2000:]
    return lines[0]


@pytest.fixture(scope="module")
def fashion_pngs(tmp_path_factory) -> Path:
    """Twelve real Fashion-MNIST test images as PNG files."""
    d = tmp_path_factory.mktemp("fashion-pngs")
    images, _ = load_fashion_mnist("test")
    for i in range(12):
        cv2.imwrite(str(d / f"{i:02d}.png"), images[i])
    return d


@pytest.mark.slow  # scripts/test --full (minutes on two shared cores)
def test_convert_is_callable_many_times_in_one_process(tmp_path, capfd) -> None:
    """fp32, int8 and TFLite in one process: `edgeinfer.convert` stays the function."""
    common = {"parity_limit": 200, "calibration_limit": 64}
    r1 = edgeinfer.convert("fashion", tmp_path / "f.onnx", **common)
    assert callable(edgeinfer.convert)
    r2 = edgeinfer.convert("fashion", tmp_path / "f-int8.onnx", quantize="int8", **common)
    r3 = edgeinfer.convert("fashion", tmp_path / "f.tflite", **common)
    assert [r.metadata.provenance["format"] for r in (r1, r2, r3)] == ["onnx", "onnx", "tflite"]
    assert r2.metadata.provenance["quantize"] == "int8"
    assert all(r.path.stat().st_size > 0 for r in (r1, r2, r3))
    # Third-party chatter of the TFLite conversion is captured (shown only on failure).
    out = capfd.readouterr()
    noise = [w for w in ("absl", "FutureWarning", "torchao", "overriding", "WARNING:")
             if w in out.out + out.err]
    assert not noise, noise


def test_python_dash_m_edgeinfer_runs(tmp_path) -> None:
    p = subprocess.run([PY, "-m", "edgeinfer", "--version"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=60, check=False)
    assert p.returncode == 0 and p.stdout.startswith("edgeinfer "), p.stderr


FACTORY = textwrap.dedent("""
    import torch
    from torch import nn

    def build():
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 2.0)
        m[1].num_batches_tracked += 1
        return m

    def needs_args(width):
        return build()
""")
SPEC = '{"size": [28, 28], "frame_color": "BGR", "model_color": "GRAY", "scale": 0.00392156862745098, "mean": [0.286], "std": [0.353]}'  # noqa: E501


@pytest.fixture()
def user_project(tmp_path, fashion_pngs) -> Path:
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "models.py").write_text(FACTORY)
    (tmp_path / "spec.json").write_text(SPEC)
    return tmp_path


@pytest.mark.slow  # a CLI conversion in a subprocess, ~45 s of the quick lane
def test_factory_in_the_current_folder_is_found(user_project, fashion_pngs) -> None:
    p = _cli("convert", "mypkg.models:build", "--spec", "spec.json", "-o", "m.onnx",
             "--parity-data", str(fashion_pngs), cwd=user_project)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (user_project / "m.onnx").is_file()
    # ...and no "training mode" warning for a freshly built module: it is recorded quietly.
    assert "training mode" not in p.stderr
    meta = Predictor(user_project / "m.onnx").metadata
    assert meta.provenance["eval_mode"] == "switched from training mode"


def test_factory_that_needs_arguments_is_one_line(user_project, fashion_pngs) -> None:
    line = _one_line_error(_cli("convert", "mypkg.models:needs_args", "--spec", "spec.json",
                                "-o", "m.onnx", "--parity-data", str(fashion_pngs),
                                cwd=user_project))
    assert "without arguments" in line


def test_unimportable_factory_is_one_line(user_project) -> None:
    line = _one_line_error(_cli("convert", "nosuchpkg.models:build", "--spec", "spec.json",
                                "-o", "m.onnx", cwd=user_project))
    assert "nosuchpkg" in line


BLOCK_ONNX = textwrap.dedent("""
    import sys
    class _Block:
        def find_spec(self, name, path=None, target=None):
            if name == "onnx" or name.startswith("onnx."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None
    sys.meta_path.insert(0, _Block())
""")


def test_missing_extra_is_named(tmp_path, fashion_pngs) -> None:
    """A runtime-only install (no onnx): convert and check name the extra to install."""
    (tmp_path / "sitecustomize.py").write_text(BLOCK_ONNX)
    env = {"PYTHONPATH": str(tmp_path)}
    line = _one_line_error(_cli("convert", "fashion", "-o", "f.onnx", cwd=tmp_path, env=env))
    assert "pip install 'edgeinfer[convert]'" in line


def test_a_user_folder_named_photos_wins(tmp_path, monkeypatch, fashion_pngs) -> None:
    spec = PreprocessSpec.from_json(SPEC)
    (tmp_path / "photos").mkdir()
    cv2.imwrite(str(tmp_path / "photos" / "mine.png"), np.full((28, 28), 7, np.uint8))
    monkeypatch.chdir(tmp_path)
    fs = load_frames("photos", spec)
    assert fs.ids == ["mine.png"]
    assert len(load_frames("builtin:photos", spec).frames) == 6  # the bundled set, spelled out
    with pytest.raises(ConfigError, match="unknown bundled"):
        load_frames("builtin:nope", spec)


def test_fifo_is_refused_at_once(tmp_path, fashion_artifact) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    # First in a subprocess with a timeout: before the fix this hung forever.
    line = _one_line_error(_cli("predict", str(fashion_artifact), str(fifo), cwd=tmp_path,
                                timeout=60))
    assert "named pipe" in line
    spec = PreprocessSpec.from_json(SPEC)
    with pytest.raises(ImageDecodeError, match="named pipe"):
        load_image(fifo, spec)
    with pytest.raises(ModelError, match="named pipe"):
        Predictor(fifo)


def test_backend_is_chosen_by_content_and_extensions_must_match(tmp_path,
                                                               fashion_tflite) -> None:
    r = fashion_tflite
    renamed = tmp_path / "f.TFLITE"
    renamed.write_bytes(r.path.read_bytes())
    assert Predictor(renamed).backend.__class__.__name__ == "TFLiteBackend"
    odd = tmp_path / "model.bin"
    odd.write_bytes(r.path.read_bytes())
    assert Predictor(odd).backend.__class__.__name__ == "TFLiteBackend"
    with pytest.raises(ConfigError, match="ends in .onnx but the format is tflite"):
        edgeinfer.convert("fashion", tmp_path / "x.onnx", format="tflite")
