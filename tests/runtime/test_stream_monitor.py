"""Stream with a monitored Predictor on a real video file (MJPG .avi of real Fashion-MNIST
frames, the second half 4x darker): every processed frame feeds the monitor, results carry
its alarm, stats() its report; `edgeinfer watch --monitor --json` says the alarm per frame."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgeinfer import Predictor
from edgeinfer.cli import main
from edgeinfer.runtime.stream import Stream
from tests.monitor.videos import dark_half_video

N, DARK_FROM = 600, 300


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return dark_half_video(tmp_path_factory.mktemp("stream-monitor") / "clip.avi", 7000, N, 84,
                           DARK_FROM)


def test_every_processed_frame_feeds_the_monitor(fashion_artifact, video) -> None:
    p = Predictor(fashion_artifact, monitor=True)
    with Stream(p, str(video)) as stream:
        assert stream.monitor is p.monitor
        results = list(stream)
    assert len(results) == N and p.monitor.frames == N
    alarms = [r.alarm for r in results]
    assert not any(alarms[:DARK_FROM])  # healthy frames: no alarm
    first = alarms.index(True)
    assert DARK_FROM < first < N and results[-1].alarm
    s = stream.stats()
    assert s.processed == N and s.alarm is True
    assert s.monitor["frames"] == N and s.monitor["alarm"] is True
    ref = s.monitor["reference_accuracy"]
    assert s.estimated_accuracy == s.monitor["estimated_accuracy"] < ref - 0.1
    assert s.monitor["drift"]["brightness"] < -1 and "sigma" in s.monitor["cause"]
    assert s.monitor["first_alarm_frame"] == first + 1
    json.dumps(s.to_dict())  # JSON-ready, as watch and the docs use it


def test_the_monitor_sees_unsmoothed_probabilities(fashion_artifact, video) -> None:
    plain = Predictor(fashion_artifact, monitor=True)
    smooth = Predictor(fashion_artifact, monitor=True)
    with Stream(plain, str(video), max_frames=200) as a:
        pa = [r.probs for r in a]
    with Stream(smooth, str(video), max_frames=200, smoothing=0.2) as b:
        pb = [r.probs for r in b]
    assert not np.allclose(pa, pb)  # the smoothing did change what the caller sees
    ra, rb = plain.monitor.report(), smooth.monitor.report()
    assert ra.frames == rb.frames == 200
    assert ra.estimated_accuracy == pytest.approx(rb.estimated_accuracy, abs=1e-9)
    assert ra.drift == pytest.approx(rb.drift, abs=1e-9)


def test_without_a_monitor_nothing_is_claimed(fashion_artifact, video) -> None:
    with Stream(Predictor(fashion_artifact), str(video), max_frames=5) as stream:
        results = list(stream)
    assert stream.monitor is None and all(r.alarm is None for r in results)
    s = stream.stats()
    assert s.monitor is None and s.alarm is None and s.estimated_accuracy is None


def test_watch_json_lines_carry_the_alarm(fashion_artifact, video, capsys) -> None:
    assert main(["watch", str(fashion_artifact), str(video), "--monitor", "--json",
                 "--monitor-every", "1000"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(ln) for ln in out.splitlines()]
    assert len(lines) == N
    flags = [ln["monitor_alarm"] for ln in lines]
    assert not any(flags[:DARK_FROM]) and flags[-1] is True
    assert "ALARM" in err.splitlines()[-1]  # the summary line at the end
    assert main(["watch", str(fashion_artifact), str(video), "--json", "--max-frames",
                 "3"]) == 0
    assert all("monitor_alarm" not in json.loads(ln)
               for ln in capsys.readouterr().out.splitlines())
