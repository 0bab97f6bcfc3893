"""Newcomer frictions of issue 17, each with a test that failed before its fix: bars and
warnings leaking through the quiet exporters, label folders that cannot be named after a
label containing '/', an error that named an option ``predict`` did not have, and a doctor
table with two identical columns and a 0.0% row that was not a measurement."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from edgeinfer.cli import main
from edgeinfer.converter.quiet import captured
from edgeinfer.data import datasets
from edgeinfer.data.frames import load_frames
from edgeinfer.errors import ConfigError
from edgeinfer.spec import PreprocessSpec

FASHION_SPEC = PreprocessSpec(size=(28, 28), model_color="GRAY", mean=(0.286,), std=(0.353,))


def test_calibration_progress_bar_is_hidden(capfd):
    """ai_edge_quantizer's "Running Calibration" bar (tqdm) leaked although tqdm had been
    imported before ``captured`` set TQDM_DISABLE (tqdm reads it at import only)."""
    import tqdm  # noqa: F401 - imported first, as in a real conversion
    from ai_edge_quantizer.utils.progress_utils import ProgressBar

    with captured(), ProgressBar(total_steps=300, description="Running Calibration:") as bar:
        for _ in range(300):  # ai_edge_quantizer shows bars of >= 100 steps
            bar.update_single_step()
    err = capfd.readouterr().err
    assert "Running Calibration" not in err, err


def test_keras_input_structure_warning_is_hidden():
    from edgeinfer.converter.sources.from_keras import _quiet_tf

    _quiet_tf()
    import keras

    inp = keras.Input((4,))
    model = keras.Model([inp], keras.layers.Dense(2)(inp))  # a one-element input list
    with warnings.catch_warnings(record=True) as seen:
        model(np.zeros((1, 4), np.float32), training=False)
    assert not [w for w in seen if "structure of `inputs`" in str(w.message)]


@pytest.fixture(scope="module")
def label_folder(tmp_path_factory):
    """'T-shirt/top' cannot be a folder name: T-shirt_top (safe spelling) and 1 (Trouser's
    class index) stand for them; real Fashion-MNIST test images."""
    images, labels = datasets.load_fashion_mnist("test")
    root = tmp_path_factory.mktemp("labelled")
    for folder, cls in (("T-shirt_top", 0), ("1", 1), ("Pullover", 2)):
        (root / folder).mkdir()
        for j in np.flatnonzero(labels == cls)[:3]:
            cv2.imwrite(str(root / folder / f"{j}.png"), images[j])
    return root


def test_labelled_folder_accepts_safe_spelling_and_class_index(label_folder):
    fs = load_frames(str(label_folder), FASHION_SPEC, class_names=datasets.FASHION_LABELS)
    assert sorted(set(fs.labels.tolist())) == [0, 1, 2] and len(fs.frames) == 9
    assert (fs.labels == 0).sum() == 3  # T-shirt_top -> class 0


def test_unknown_folder_says_how_to_spell_labels(label_folder, tmp_path):
    bad = tmp_path / "bad"
    (bad / "T-shirt-top").mkdir(parents=True)
    src = next((label_folder / "Pullover").iterdir())
    (bad / "T-shirt-top" / src.name).write_bytes(src.read_bytes())
    with pytest.raises(ConfigError, match=r"T-shirt_top\), or by class index"):
        load_frames(str(bad), FASHION_SPEC, class_names=datasets.FASHION_LABELS)


def test_predict_has_the_option_its_pixel_error_names(fashion_artifact, tmp_path, capsys):
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), datasets.sample_photos()["astronaut"])  # 512x512 = 0.26 MP
    assert main(["predict", str(fashion_artifact), str(photo), "--max-megapixels", "0.1"]) == 2
    err = capsys.readouterr().err
    assert "above the limit of 0.1 MP" in err and "--max-megapixels" in err
    assert main(["predict", str(fashion_artifact), str(photo), "--max-megapixels", "1"]) == 0


def test_doctor_table_has_no_duplicate_column_and_no_fake_zero():
    from edgeinfer.check.doctor.report import table
    from edgeinfer.check.doctor.run import CulpritRow, DoctorResult

    rows = [CulpritRow("swapped_rb", "RGB/BGR swapped", 0.97, 0.84, 0.97, 0.2, "fix"),
            CulpritRow("distribution_shift", "frames unlike the training data", 0.0, 0.84,
                       None, 0.2, "fix")]
    res = DoctorResult(source="m", data="d", n=10, labelled=True, mode="device",
                       top="swapped_rb", margin=0.5, verdict="v", culprits=rows)
    head, _, shift = table(res).splitlines()
    assert "agree" not in head.replace("agrees w/ device", "")  # one agreement column
    assert "0.0%" not in shift and "not seen" in shift
    rows[0].agreement = 0.90  # a stochastic culprit: one run differs from the score
    assert "agree(1 run)" in table(res).splitlines()[0]
