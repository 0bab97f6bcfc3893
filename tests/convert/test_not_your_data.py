"""No silent parity data (issue 17): a user's model converted without ``--parity-data`` is
gated on bundled frames that resemble its input, and every place that shows the verdict
says that it is not the user's data; ``--strict`` refuses.

The model is a user's own small Fashion-MNIST-style CNN (tests/doctor/small_fashion: 3
BatchNorm layers, trained weights) with class names of its own ("class-0".."class-9"), so
the bundled set's labels must not be taken as its ground truth either.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeinfer.cli import main

HERE = Path(__file__).parents[1] / "doctor" / "small_fashion"
NOTE = "bundled Fashion-MNIST only: not your data"
WORD = f"PASS ({NOTE})"


@pytest.fixture(scope="module")
def user_args(tmp_path_factory) -> list[str]:
    labels = tmp_path_factory.mktemp("user") / "labels.txt"
    labels.write_text("".join(f"class-{i}\n" for i in range(10)))
    return [f"{HERE / 'net.py'}:build", "--weights", str(HERE / "weights.pt"), "--spec",
            str(HERE / "spec.json"), "--labels", str(labels)]


@pytest.fixture(scope="module")
def converted(user_args, tmp_path_factory):
    out = tmp_path_factory.mktemp("user") / "user.onnx"
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["convert", *user_args, "-o", str(out), "--parity-limit", "300"])
    return rc, buf.getvalue(), out


def test_default_data_is_named_in_the_verdict(converted, capsys):
    rc, out, path = converted
    assert rc == 0
    assert f"{path}: {WORD} on 300 frames (fashion-test)" in out
    assert "BatchNorm: 3 layers in the source, folded by the exporter" in out
    assert "accuracy" not in out  # fashion's labels are not this model's classes
    assert main(["info", str(path)]) == 0
    info = capsys.readouterr().out
    assert f"parity:     {WORD} on 300 frames (fashion-test)" in info
    assert main(["info", str(path), "--json"]) == 0
    par = json.loads(capsys.readouterr().out)["parity"]
    assert par["verdict"] == WORD and par["data_note"] == NOTE
    assert "accuracy_source" not in par


def test_strict_refuses_without_parity_data(user_args, tmp_path, capsys):
    out = tmp_path / "strict.onnx"
    assert main(["convert", *user_args, "-o", str(out), "--strict"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("edgeinfer: error: --strict: no --parity-data given")
    assert not out.exists()


def test_help_says_what_the_default_data_is(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "the verdict says 'not your data'" in text and "--strict" in text
