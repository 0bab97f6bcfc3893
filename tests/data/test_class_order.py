"""Class folders read in the model's order without --labels (issue 25.5: index-named folders
sorted as strings, 0, 1, 10, 11, 2, ..., made doctor and audit score the right spec at 15%)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeinfer.data.frames import load_frames
from edgeinfer.errors import ConfigError
from edgeinfer.spec import PreprocessSpec

SPEC = PreprocessSpec(size=(8, 8), frame_color="GRAY", model_color="GRAY")


def _folders(root, names):
    for i, name in enumerate(names):
        d = root / name
        d.mkdir()
        cv2.imwrite(str(d / "a.png"), np.full((8, 8), 10 * i, np.uint8))


def test_index_folders_are_class_indices(tmp_path):
    _folders(tmp_path, [str(i) for i in range(12)])
    fs = load_frames(str(tmp_path), SPEC)
    by_id = dict(zip(fs.ids, fs.labels.tolist(), strict=True))
    assert all(by_id[f"{i}/a.png"] == i for i in range(12))
    assert fs.class_names == tuple(str(i) for i in range(12))


def test_missing_index_folders_keep_their_index(tmp_path):
    _folders(tmp_path, ["0", "3", "7"])
    fs = load_frames(str(tmp_path), SPEC)
    assert sorted(fs.labels.tolist()) == [0, 3, 7] and len(fs.class_names) == 8


def test_named_folders_keep_sorted_order(tmp_path):
    _folders(tmp_path, ["cat", "ant", "dog"])
    fs = load_frames(str(tmp_path), SPEC)
    assert fs.class_names == ("ant", "cat", "dog")
    assert dict(zip(fs.ids, fs.labels.tolist(), strict=True))["dog/a.png"] == 2


def test_a_mix_of_indices_and_names_is_refused(tmp_path):
    _folders(tmp_path, ["0", "1", "cat"])
    with pytest.raises(ConfigError, match="--labels"):
        load_frames(str(tmp_path), SPEC)


def test_given_labels_still_decide(tmp_path):
    _folders(tmp_path, ["2", "0"])
    fs = load_frames(str(tmp_path), SPEC, class_names=["a", "b", "c"])
    assert dict(zip(fs.ids, fs.labels.tolist(), strict=True)) == {"0/a.png": 0, "2/a.png": 2}
