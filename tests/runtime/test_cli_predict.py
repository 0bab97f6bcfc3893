"""`edgeinfer predict`: images, a bad image among good ones, JSON lines, a real video file."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.cli import main
from edgeinfer.data.datasets import FASHION_LABELS, load_fashion_mnist


@pytest.fixture(scope="module")
def fashion_files(tmp_path_factory) -> tuple[list[Path], np.ndarray]:
    images, labels = load_fashion_mnist("test")
    d = tmp_path_factory.mktemp("imgs")
    paths = []
    for i in range(4):
        p = d / f"test{i}.png"
        cv2.imwrite(str(p), images[i])
        paths.append(p)
    return paths, labels[:4]


def test_predict_images_prints_top_k(fashion_artifact, fashion_files, capsys) -> None:
    paths, labels = fashion_files
    assert main(["predict", str(fashion_artifact), *map(str, paths), "--top-k", "2",
                 "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [ln["image"] for ln in lines] == [str(p) for p in paths]
    assert all(len(ln["predictions"]) == 2 for ln in lines)
    top1 = [ln["predictions"][0]["label"] for ln in lines]
    # the reference model is 92.5% accurate; these four test images are among the easy ones
    assert top1 == [FASHION_LABELS[i] for i in labels]


def test_a_bad_image_is_one_line_and_the_others_still_print(
        fashion_artifact, fashion_files, tmp_path: Path, capsys) -> None:
    paths, _ = fashion_files
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(cv2.imencode(".jpg", np.zeros((64, 64, 3), np.uint8))[1].tobytes()[:200])
    assert main(["predict", str(fashion_artifact), str(paths[0]), str(bad), str(paths[1])]) == 2
    out = capsys.readouterr()
    assert len(out.out.strip().splitlines()) == 2
    errors = [ln for ln in out.err.splitlines() if ln.startswith("edgeinfer: error:")]
    assert len(errors) == 1 and "broken.jpg" in errors[0]
    assert "Traceback" not in out.err


def test_video_file_prints_one_line_per_frame(fashion_artifact, tmp_path: Path, capsys) -> None:
    images, labels = load_fashion_mnist("test")
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (112, 112))
    assert writer.isOpened()
    for img in images[:6]:
        writer.write(cv2.cvtColor(cv2.resize(img, (112, 112)), cv2.COLOR_GRAY2BGR))
    writer.release()
    assert main(["predict", str(fashion_artifact), "--video", str(video), "--max-frames", "5",
                 "--top-k", "1", "--json"]) == 0
    frames = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [f["frame"] for f in frames] == [0, 1, 2, 3, 4]
    assert all(f["fps"] > 0 and f["latency_ms"] > 0 for f in frames)
    # MJPEG recompression and 4x upscaling still leave most frames recognisable
    hits = sum(f["predictions"][0]["label"] == FASHION_LABELS[lab]
               for f, lab in zip(frames, labels, strict=False))
    assert hits >= 4


@pytest.mark.parametrize("args, match", [
    (["--video", "/nonexistent/clip.avi"], "cannot open video"),
    (["--provider", "cuda"], "cuda"),
    ([], "IMAGE"),
    (["/nonexistent.jpg"], "does not exist"),
])
def test_predict_errors_exit_2(fashion_artifact, args, match, capsys) -> None:
    argv = ["predict", str(fashion_artifact)]
    if "--provider" in args:
        argv.append(__file__)  # an image argument, never reached
    argv += args
    assert main(argv) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("edgeinfer: error:") and match.lower() in last.lower()
