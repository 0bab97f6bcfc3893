"""The field monitor's reference profile, stored by ``convert`` (issue 27).

The profile must describe the artifact that is written - its own probabilities, int8 and
TFLite included - on the parity frames, so the monitor's reference accuracy is what that
artifact really scores there. Each test recomputes the figure independently from the
written file and the dataset. A user's unlabelled parity data gives a drift-only profile;
bundled frames that are not the user's data give none (a wrong-domain reference would
alarm on healthy frames).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer import Predictor
from edgeinfer.cli import main
from edgeinfer.converter.profile import robustness_frames
from edgeinfer.data.datasets import load_fashion_mnist
from edgeinfer.data.frames import to_frame_color
from edgeinfer.diagnose.corruptions import CORRUPTIONS
from edgeinfer.runtime.monitor import ReferenceProfile

SMALL = Path(__file__).parents[1] / "doctor" / "small_fashion"


def _profile(path: Path) -> ReferenceProfile:
    stored = Predictor(path).metadata.monitor
    assert stored, f"{path} has no monitor profile"
    return ReferenceProfile.from_dict(stored)


def _own_accuracy(path: Path, n: int) -> float:
    """The written artifact's top-1 accuracy on the first ``n`` Fashion-MNIST test frames
    (the parity frames), computed here without the converter."""
    p = Predictor(path)
    im, y = load_fashion_mnist("test")
    frames = np.stack([to_frame_color(f, p.spec.frame_color) for f in im[:n]])
    top = np.concatenate([p.backend.run(frames[i:i + 500]).argmax(axis=1)
                          for i in range(0, n, 500)])
    return float(np.mean(top == y[:n]))


def _check_labelled(result) -> ReferenceProfile:
    prof = _profile(result.path)
    n = result.metadata.parity["n"]
    assert prof.n == prof.labelled == n
    assert prof.reference_accuracy == pytest.approx(_own_accuracy(result.path, n), abs=1e-9)
    return prof


def test_onnx_fp32_profile_is_the_artifacts_own_accuracy_with_robustness(fashion_conversion):
    prof = _check_labelled(fashion_conversion)
    assert prof.estimator and prof.calibration
    assert set(prof.signals) >= {"brightness", "contrast", "noise"}
    assert set(prof.robustness) == set(CORRUPTIONS)
    for kind, curve in prof.robustness.items():
        assert [e["severity"] for e in curve] == [1, 3, 5], kind
        assert {e["frames"] for e in curve} == {robustness_frames(prof.n)} == {128}
    dark = prof.robustness["brightness_contrast"]
    # darker and flatter frames: the brightness signal moves down, accuracy falls with severity
    assert dark[-1]["shift"]["brightness"] < dark[0]["shift"]["brightness"] < 0
    assert dark[-1]["accuracy"] < dark[0]["accuracy"] <= prof.reference_accuracy + 0.02


def test_robustness_frames_follow_the_parity_set():
    """An eighth of the parity frames, at least 48 (a curve point to ~6 accuracy points),
    at most 128: a large model on a small labelled set pays seconds, not a minute."""
    assert [robustness_frames(n) for n in (20, 48, 100, 400, 1024, 10_000)] == [
        20, 48, 48, 50, 128, 128]


def test_int8_profile_uses_the_int8_artifacts_probabilities(fashion_int8_conversion,
                                                            fashion_conversion):
    prof = _check_labelled(fashion_int8_conversion)
    fp32 = _profile(fashion_conversion.path)
    # same frames, different model: the class mix is int8's own, not a copy of fp32's
    assert prof.n == fp32.n and prof.class_freq != fp32.class_freq


def test_tflite_fp32_profile(fashion_tflite):
    assert fashion_tflite.path.suffix == ".tflite"
    assert set(_check_labelled(fashion_tflite).robustness) == set(CORRUPTIONS)


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["fashion_tflite_fp16", "fashion_tflite_int8"])
def test_tflite_quantized_profiles(fixture, request):
    """slow (conftest.SLOW_FIXTURES): the quantized TFLite conversions take minutes."""
    _check_labelled(request.getfixturevalue(fixture))


def test_info_shows_the_profile(fashion_artifact, capsys):
    assert main(["info", str(fashion_artifact)]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("monitor:"))
    prof = _profile(fashion_artifact)
    assert f"profile of {prof.n} frames ({prof.n} labelled)" in line
    assert f"reference accuracy {prof.reference_accuracy:.1%}" in line
    assert "robustness of" in line and "gaussian_noise" in line
    assert main(["info", str(fashion_artifact), "--json"]) == 0
    stored = json.loads(capsys.readouterr().out)["monitor"]
    assert ReferenceProfile.from_dict(stored).n == prof.n


def _user_convert(tmp: Path, *extra: str) -> Path:
    labels = tmp / "labels.txt"
    labels.write_text("".join(f"class-{i}\n" for i in range(10)))
    out = tmp / "user.onnx"
    assert main(["convert", f"{SMALL / 'net.py'}:build", "--weights", str(SMALL / "weights.pt"),
                 "--spec", str(SMALL / "spec.json"), "--labels", str(labels), "-o", str(out),
                 *extra]) == 0
    return out


def test_unlabelled_parity_data_gives_a_drift_only_profile(tmp_path, capsys):
    im, _ = load_fashion_mnist("test")
    data = tmp_path / "frames"
    data.mkdir()
    for i in range(200):
        cv2.imwrite(str(data / f"{i:04d}.png"), im[3000 + i])
    out = _user_convert(tmp_path, "--parity-data", str(data))
    assert "monitor profile: 200 frames (0 labelled)" in capsys.readouterr().err
    prof = _profile(out)
    assert (prof.n, prof.labelled, prof.reference_accuracy) == (200, 0, None)
    assert prof.robustness == {} and prof.signals
    assert main(["info", str(out)]) == 0
    assert "accuracy not estimated" in capsys.readouterr().out


def test_bundled_frames_that_are_not_your_data_give_no_profile(tmp_path, capsys):
    out = _user_convert(tmp_path, "--parity-limit", "200")
    assert "monitor profile: none" in capsys.readouterr().err
    assert Predictor(out).metadata.monitor == {}
    assert main(["info", str(out)]) == 0
    assert "no reference profile" in capsys.readouterr().out
