"""`edgeinfer watch --monitor --overlay` on a real video: healthy Fashion-MNIST frames, then
the same kind of frames 4x darker; the monitor's line turns to ALARM and the overlay says so."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from edgeinfer.cli import main
from tests.monitor.videos import dark_half_video


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return dark_half_video(tmp_path_factory.mktemp("watch") / "clip.avi", 8000, 600, 112, 300)


def test_watch_logs_the_monitor_and_draws_the_alarm(fashion_artifact, video, tmp_path,
                                                   capsys) -> None:
    out = tmp_path / "overlay"
    assert main(["watch", str(fashion_artifact), str(video), "--monitor", "--monitor-every",
                 "150", "--overlay", str(out), "--overlay-every", "300"]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "monitor:" in ln]
    assert len(lines) == 5  # frames 150, 300, 450, 600 and the summary
    assert ": ok" in lines[1] and "ALARM" in lines[-1] and "darker" in lines[-1]
    shots = sorted(out.glob("*.png"))
    assert [p.name for p in shots] == ["frame_000299.png", "frame_000599.png"]
    img = cv2.imread(str(shots[-1]))
    assert img.shape[1] >= 480
    red = (img[..., 2] > 200) & (img[..., 1] < 60) & (img[..., 0] < 60)
    assert red.sum() > 50  # the alarm line is drawn in red


def test_watch_monitor_needs_a_profile(fashion_artifact, video, tmp_path, capsys) -> None:
    import onnx

    m = onnx.load(str(fashion_artifact))
    kept = [p for p in m.metadata_props if p.key != "edgeinfer.monitor"]
    del m.metadata_props[:]
    m.metadata_props.extend(kept)
    old = tmp_path / "old.onnx"
    onnx.save(m, str(old))
    assert main(["watch", str(old), str(video), "--monitor"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no monitor profile" in err and err.count("\n") == 0
