"""`edgeinfer monitor` end to end on the real fashion artifact (its profile written by the
real converter) and real Fashion-MNIST frames written as files."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.cli import main
from edgeinfer.data.datasets import FASHION_LABELS, load_fashion_mnist
from tests.monitor.videos import dark_half_video


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """400 held-out test frames (not the first 2,000), as they are and 4x darker."""
    im, _ = load_fashion_mnist("test")
    root = tmp_path_factory.mktemp("monitor")
    out = {}
    for name, scale in (("healthy", 1.0), ("dark", 0.25)):
        d = root / name
        d.mkdir()
        for i in range(6000, 6400):
            cv2.imwrite(str(d / f"{i:05d}.png"), (im[i] * scale).astype(np.uint8))
        out[name] = d
    return out


def test_healthy_folder_exits_0_with_the_json_keys(fashion_artifact, folders, tmp_path,
                                                   capsys) -> None:
    out = tmp_path / "m.json"
    assert main(["monitor", str(fashion_artifact), str(folders["healthy"]), "--json",
                 str(out)]) == 0
    assert ": ok" in capsys.readouterr().out
    d = json.loads(out.read_text())
    assert {"estimated_accuracy", "reference_accuracy", "alarm", "drift", "cause",
            "interval", "timeline"} <= set(d)
    assert d["alarm"] is False and d["frames"] == 400
    assert abs(d["estimated_accuracy"] - d["reference_accuracy"]) < 0.06
    assert set(d["drift"]) >= {"brightness", "noise", "confidence", "class_mix"}


def test_dark_folder_exits_1_names_darkness_and_writes_the_report(fashion_artifact, folders,
                                                                 tmp_path, capsys) -> None:
    rep = tmp_path / "rep"
    assert main(["monitor", str(fashion_artifact), str(folders["dark"]), "--report",
                 str(rep)]) == 1
    line = capsys.readouterr().out
    assert "ALARM" in line and "darker" in line
    # the artifact's profile carries the robustness curve: the cost is quoted from it
    assert "darkness alone costs" in line
    assert (rep / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "ALARM" in (rep / "report.md").read_text()


def test_a_csv_of_device_probabilities(fashion_artifact, tmp_path, capsys) -> None:
    from edgeinfer import Predictor

    im, _ = load_fashion_mnist("test")
    p = Predictor(fashion_artifact)
    probs = np.stack([p.predict_probs(f) for f in im[7000:7300]])
    csv = tmp_path / "device.csv"
    csv.write_text("image," + ",".join(FASHION_LABELS) + "\n" + "".join(
        f"f{i}.png," + ",".join(f"{v:.6f}" for v in row) + "\n" for i, row in enumerate(probs)))
    assert main(["monitor", str(fashion_artifact), str(csv)]) == 0
    assert "300 frames" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["missing", "csv_columns", "top1_csv", "logits",
                                  "damaged_artifact", "no_profile"])
def test_bad_input_is_one_line_and_exit_2(case, fashion_artifact, folders, tmp_path,
                                          capsys) -> None:
    artifact, source = str(fashion_artifact), str(folders["healthy"])
    if case == "missing":
        source = str(tmp_path / "nowhere")
    elif case == "csv_columns":
        source = str(tmp_path / "x.csv")
        Path(source).write_text("image,cat,dog\na.png,0.5,0.5\n")
    elif case == "top1_csv":  # the doctor's device CSV: no probabilities
        source = str(tmp_path / "x.csv")
        Path(source).write_text("image,prediction\na.png,Coat\n")
    elif case == "logits":
        source = str(tmp_path / "x.csv")
        Path(source).write_text(",".join(f"p{i}" for i in range(10)) + "\n"
                                + ",".join(["3.0"] * 10) + "\n")
    elif case == "damaged_artifact":
        artifact = str(tmp_path / "bad.onnx")
        Path(artifact).write_bytes(Path(fashion_artifact).read_bytes()[:5000])
    elif case == "no_profile":
        import onnx

        m = onnx.load(str(fashion_artifact))
        kept = [p for p in m.metadata_props if p.key != "edgeinfer.monitor"]
        del m.metadata_props[:]
        m.metadata_props.extend(kept)
        artifact = str(tmp_path / "old.onnx")
        onnx.save(m, artifact)
    assert main(["monitor", artifact, source]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    if case == "no_profile":
        assert "--reference" in err
    if case == "top1_csv":
        assert "top-1 only" in err


def test_reference_csv_builds_the_profile(fashion_artifact, folders, tmp_path, capsys) -> None:
    """--reference: labelled frames (an image,label CSV: 'T-shirt/top' cannot be a folder
    name) calibrate the monitor instead of the artifact's profile."""
    im, y = load_fashion_mnist("test")
    ref = tmp_path / "ref"
    ref.mkdir()
    rows = ["image,label"]
    for i in range(400):
        cv2.imwrite(str(ref / f"{i}.png"), im[i])
        rows.append(f"{i}.png,{FASHION_LABELS[y[i]]}")
    (ref / "labels.csv").write_text("\n".join(rows) + "\n")
    rc = main(["monitor", str(fashion_artifact), str(folders["dark"]), "--reference",
               str(ref / "labels.csv")])
    out = capsys.readouterr()
    assert rc == 1, out.err
    assert "reference profile from" in out.err and "400 labelled frames" in out.err
    assert "darker" in out.out


def test_a_video_source_with_progress_lines_and_max_frames(fashion_artifact, tmp_path,
                                                           capsys) -> None:
    """An MJPG video (600 healthy frames, then 600 4x darker) through the Stream path."""
    video = dark_half_video(tmp_path / "field.avi", 6000, 1200, 28, 600, fps=25)
    out = tmp_path / "v.json"
    assert main(["monitor", str(fashion_artifact), str(video), "--progress-every", "400",
                 "--json", str(out)]) == 1
    err = capsys.readouterr().err
    assert sum(line.startswith("[edgeinfer] monitor: ") for line in err.splitlines()) == 3
    d = json.loads(out.read_text())
    assert (d["kind"], d["frames"], d["alarm"]) == ("video", 1200, True)
    assert main(["monitor", str(fashion_artifact), str(video), "--max-frames", "500",
                 "--json", str(out)]) == 0
    assert json.loads(out.read_text())["frames"] == 500


def test_help_names_the_sources_and_the_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["monitor", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "0 healthy, 1 alarm, 2 bad input" in text
    for word in ("image folder", "video file", "camera index", "rtsp/http URL",
                 "CSV of the device's probabilities", "--reference DIR", "--report DIR"):
        assert word in text, word
