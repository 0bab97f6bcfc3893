"""Newcomer frictions of issue 24 (part 6), each with a test that failed before its fix.

The commands run as a user runs them: ``main([...])`` in-process where only the output
matters, a subprocess where the process itself does (a closed pipe, native libraries
writing to descriptor 2). docs/frictions.md lists each command with its message before
and after.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

import edgeinfer
from edgeinfer.cli import main
from edgeinfer.data import datasets
from edgeinfer.errors import ConfigError, ConversionError, ImageDecodeError
from edgeinfer.spec import PreprocessSpec

REPO = Path(__file__).resolve().parents[2]
EDGEINFER = str(Path(sys.executable).parent / "edgeinfer")
FASHION = PreprocessSpec(size=(28, 28), model_color="GRAY", scale=1 / 255, mean=(0.286,),
                         std=(0.353,))


def _run(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([EDGEINFER, *args], capture_output=True, text=True, timeout=240,
                          env=env, check=False, **kw)


@pytest.fixture(scope="module")
def pngs(tmp_path_factory) -> Path:
    """Eight real Fashion-MNIST test images as PNG files."""
    d = tmp_path_factory.mktemp("pngs")
    images, _ = datasets.load_fashion_mnist("test")
    for i in range(8):
        cv2.imwrite(str(d / f"{i:02d}.png"), images[i])
    return d


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory, pngs) -> Path:
    """Six good images, a PNG cut in half and a text file named .png."""
    d = tmp_path_factory.mktemp("bad")
    for f in sorted(pngs.iterdir())[:6]:
        (d / f.name).write_bytes(f.read_bytes())
    data = (pngs / "07.png").read_bytes()
    (d / "cut.png").write_bytes(data[: len(data) // 2])
    (d / "notes.png").write_text("not an image")
    return d


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """fashion as ONNX with its progress lines (a small parity set keeps it quick)."""
    said: list[str] = []
    out = tmp_path_factory.mktemp("onnx") / "f.onnx"
    res = edgeinfer.convert("fashion", out, parity_limit=64, progress=said.append)
    return res, said


@pytest.fixture(scope="module")
def tflite(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tflite") / "f.tflite"
    return edgeinfer.convert("fashion", out, parity_limit=32).path


# ------------------------------------------------------------------ predict
def test_predict_takes_folders_and_options_after_the_paths(converted, pngs, capsys):
    """`predict model.onnx --json --top-k 1 imgs/*.png` failed: "unrecognized arguments"."""
    art = str(converted[0].path)
    assert main(["predict", art, "--json", "--top-k", "1", str(pngs / "00.png"),
                 str(pngs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 + 8 and all('"predictions"' in ln for ln in lines)
    assert main(["predict", art, str(pngs / "00.png"), "--top-k", "2"]) == 0
    assert capsys.readouterr().out.count("(") == 2  # --top-k after the path was applied


def test_predict_into_head_ends_quietly(converted, pngs):
    """`predict ... | head -1` printed a BrokenPipeError traceback (rc 1)."""
    img = str(pngs / "00.png")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.Popen([EDGEINFER, "predict", str(converted[0].path), "--json",
                          *[img] * 2000], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         env=env)
    assert p.stdout is not None and p.stdout.readline().startswith(b"{")
    p.stdout.close()  # the reader leaves after one line, as head -1 does
    err = p.stderr.read().decode() if p.stderr else ""
    assert p.wait(timeout=240) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err, err[-2000:]


# ------------------------------------------------------------------ convert
def test_convert_checks_labels_and_paths_before_exporting(tmp_path, pngs):
    said: list[str] = []
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(str(i) for i in range(9)))  # the model has 10 outputs
    with pytest.raises(ConversionError, match="9 labels given for a model with 10 outputs"):
        edgeinfer.convert("fashion", tmp_path / "a.onnx", labels=labels,
                          parity_data=str(pngs), progress=said.append)
    with pytest.raises(ConfigError, match="--calibration 'nowhere/' does not exist"):
        edgeinfer.convert("fashion", tmp_path / "b.onnx", quantize="int8",
                          calibration="nowhere/", parity_data=str(pngs), progress=said.append)
    assert not [s for s in said if "exporting" in s], said  # refused before the export


def test_undecodable_images_are_named_with_reasons_or_skipped(tmp_path, bad_folder):
    said: list[str] = []
    with pytest.raises(ImageDecodeError) as e:
        edgeinfer.convert("fashion", tmp_path / "a.onnx", parity_data=str(bad_folder),
                          progress=said.append)
    msg = str(e.value)
    assert "2 of 8 images" in msg and "--skip-bad" in msg
    assert "cut.png is a truncated PNG image ('IDAT' chunk cut)" in msg
    assert "notes.png is not a JPEG, PNG" in msg
    assert not [s for s in said if "exporting" in s]
    res = edgeinfer.convert("fashion", tmp_path / "b.onnx", parity_data=str(bad_folder),
                            skip_bad=True)
    p = res.metadata.parity
    assert p["n"] == 6 and p["data"].endswith("2 undecodable files skipped")


def test_check_and_pack_take_skip_bad(tmp_path, converted, bad_folder, capsys):
    art = str(converted[0].path)
    assert main(["check", "fashion", art, "--data", str(bad_folder), "-q",
                 "--no-timing"]) == 2
    assert "cut.png is a truncated PNG image" in capsys.readouterr().err
    assert main(["check", "fashion", art, "--data", str(bad_folder), "-q", "--no-timing",
                 "--skip-bad"]) == 0
    assert "(" + str(bad_folder) + ", 2 undecodable files skipped)" in capsys.readouterr().out
    pack = tmp_path / "m.pack"
    assert main(["pack", "fashion", "--data", str(bad_folder), "-o", str(pack),
                 "--skip-bad"]) == 0
    assert "6 frames" in capsys.readouterr().out


def test_conversion_says_the_end_to_end_line_once(converted):
    said = converted[1]
    assert len([s for s in said if "end-to-end" in s]) == 1, said


# ------------------------------------------------------------------ audit
def test_audit_uses_a_fixed_number_of_frames_whatever_the_load(converted, monkeypatch):
    """The frame count came from a timed pilot: a loaded machine audited fewer frames and
    the same conversion gave 90.1%, 93.0% and 94.9%."""
    from edgeinfer.converter.sources.load import resolve_source
    from edgeinfer.data.frames import load_frames
    from edgeinfer.diagnose import audit

    spec = converted[0].metadata.spec
    frames = load_frames("builtin:fashion-test", spec, limit=200)
    src = resolve_source("fashion", spec)
    calm = audit.audit_spec(src, spec, frames, limit=64)
    clock = iter(range(0, 10**6, 5))  # every perf_counter call: 5 s later (a loaded host)
    monkeypatch.setattr(audit.time, "perf_counter", lambda: float(next(clock)))
    busy = audit.audit_spec(src, spec, frames, limit=64)
    assert calm.n == busy.n == 64
    assert calm.given.accuracy == busy.given.accuracy


@pytest.mark.slow  # two CLI conversions in subprocesses, ~50 s of the quick lane
def test_convert_has_a_flag_for_the_audit_frames(tmp_path, pngs):
    p = _run("convert", "fashion", "-o", str(tmp_path / "a.onnx"), "--parity-limit", "40",
             "--audit-frames", "24")
    assert p.returncode == 0, p.stderr[-2000:]
    meta = edgeinfer.Predictor(tmp_path / "a.onnx").metadata
    assert meta.provenance["spec_audit"]["n"] == 24


# ------------------------------------------------------------------ info, verify, check
def test_info_says_the_audit_once_and_every_resize_field(tmp_path, converted, capsys):
    assert main(["info", str(converted[0].path)]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "spec audit" in ln)
    assert line.count("spec audit") == 1 and line.startswith("spec audit: pass ("), line
    crop = PreprocessSpec(size=(28, 28), model_color="GRAY", resize="shorter_crop",
                          resize_shorter=32, antialias=True, scale=1 / 255, mean=(0.286,),
                          std=(0.353,))
    art = edgeinfer.convert("fashion", tmp_path / "crop.onnx", spec=crop, parity_limit=32,
                            accept_spec=True).path
    assert main(["info", str(art)]) == 0
    frame = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("frame:"))
    assert "shorter side 32" in frame and "antialias" in frame, frame


def test_verify_table_columns_do_not_run_together(tmp_path, tflite, pngs, capsys):
    pack = tmp_path / "f.pack"
    assert main(["pack", "fashion", "--data", str(pngs), "--artifact", str(tflite),
                 "-o", str(pack)]) == 0
    capsys.readouterr()
    assert main(["verify", str(tflite), str(pack), "--no-plots", "--latency-runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "(decoded here)torch" not in out
    assert "tflite-fp32 (decoded here)  torch (pack)" in out, out


def test_check_names_the_file_that_is_neither_onnx_nor_tflite(tmp_path, capsys):
    junk = tmp_path / "model.onnx"
    junk.write_bytes(b"\x00garbage that is no model")
    assert main(["check", "fashion", str(junk), "--data", "builtin:fashion-test",
                 "--limit", "8"]) == 2
    err = capsys.readouterr().err
    assert "neither ONNX" in err and str(junk) in err, err


# ------------------------------------------------------------------ serve
def test_predict_route_says_an_empty_body_is_empty(converted):
    from starlette.testclient import TestClient

    from edgeinfer.serve.app import create_app
    from edgeinfer.serve.config import ServeConfig
    from edgeinfer.serve.models import ModelSet

    cfg = ServeConfig()
    with TestClient(create_app(ModelSet.load([converted[0].path], cfg), cfg)) as c:
        r = c.post("/predict", content=b"")
    assert r.status_code == 400
    assert r.json()["error"].startswith("the request body is empty"), r.json()


def test_serving_guide_names_the_stack_the_extra_installs():
    text = (REPO / "docs" / "guide" / "serving.md").read_text()
    assert "uvicorn[standard] (httptools, uvloop)" in text
    assert "(pure-Python HTTP:\nuvicorn with h11)" not in text


# ------------------------------------------------------------------ native chatter
def test_tflite_commands_do_not_print_the_xnnpack_banner(tflite, pngs):
    p = _run("predict", str(tflite), str(pngs / "00.png"), "--top-k", "1")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "XNNPACK" not in p.stderr, p.stderr


@pytest.mark.parametrize("first", ["edgeinfer.converter.sources.from_torch",
                                   "edgeinfer.converter.spec_resolve"])
def test_torchao_load_warnings_do_not_reach_the_terminal(first):
    """A factory whose module imports transformers (which imports torchao) printed
    "Failed to load .../torchao/_C_mxfp8...so" and torch pytree warnings; so did
    ``--spec-from preprocessor_config.json`` once spec_from built the processor with
    transformers before the torch frontend (which silenced them) was imported."""
    code = f"import {first}\nimport torchao\nprint('ok')"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=240, check=False)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]
    assert "Failed to load" not in p.stderr and "_pytree" not in p.stderr, p.stderr[-2000:]


def test_setup_numbers_its_steps():
    text = (REPO / "scripts" / "setup").read_text()
    n = int(text.split("STEPS=")[1].split()[0])
    for i in range(1, n + 1):
        assert f'step {i} "' in text
    assert 'echo "[setup] $1/$STEPS $2' in text


def test_time_module_is_the_audits_clock():
    """The determinism test patches ``audit.time``: fail loudly if the audit stops using it
    (the patch would then test nothing)."""
    from edgeinfer.diagnose import audit

    assert audit.time is time
