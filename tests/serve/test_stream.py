"""Stream on a real video file (MJPG .avi of real Fashion-MNIST frames): every frame in
order, or latest-frame replay with drops counted; latency per frame; EMA; `edgeinfer watch`."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgeinfer.cli import main
from edgeinfer.errors import ConfigError, ImageDecodeError
from edgeinfer.runtime.stream import Stream


@pytest.fixture(scope="module")
def video(tmp_path_factory, fashion_frames) -> Path:
    frames, _ = fashion_frames
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 100, (56, 56))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()
    return path


def _decoded(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            return out
        out.append(f)


def test_file_every_frame_in_order(video, predictor, fashion_frames) -> None:
    frames, labels = fashion_frames
    decoded = _decoded(video)
    assert len(decoded) == len(frames)
    with Stream(predictor, str(video), top_k=2) as stream:
        assert not stream.latest
        results = list(stream)
    assert [r.frame_id for r in results] == list(range(len(frames)))
    for r, f in zip(results, decoded, strict=True):
        np.testing.assert_array_equal(r.probs, predictor.predict_probs(f))
        assert r.latency_ms >= r.infer_ms > 0 and len(r.predictions) == 2
    hits = sum(r.predictions[0].index == lab for r, lab in zip(results, labels, strict=True))
    assert hits >= 0.75 * len(frames)  # MJPEG recompression of 2x upscaled real images
    s = stream.stats()
    assert (s.read, s.processed, s.dropped) == (len(frames), len(frames), 0)
    assert s.fps > 0 and s.latency_p99_ms >= s.latency_p50_ms > 0


def test_realtime_replay_drops_stale_frames(video, predictor) -> None:
    """100 fps replay, a consumer that is still busy with its first frame when the whole file
    has been delivered: the frames in between are dropped and counted, and the next result
    is the newest frame, not the oldest of a backlog (reading every frame, the consumer
    would work through all 32 in order, each waiting behind the ones before it).

    The consumer waits for the reader to finish (an event, not a sleep), so the outcome does
    not depend on how fast this machine is."""
    seen = []
    stream = Stream(predictor, str(video), realtime=True)

    def slow(r) -> None:
        seen.append(r)
        if len(seen) == 1:
            stream._reader.join(60)  # busy until every frame has been delivered
            assert not stream._reader.is_alive()

    stats = stream.run(slow)
    assert stream.latest and stats.read == 32
    ids = [r.frame_id for r in seen]
    assert ids == sorted(set(ids)) and ids[-1] == 31  # in order, gaps are the drops
    assert len(seen) <= 2 and stats.dropped == 32 - len(seen) > 0
    assert stats.processed + stats.dropped == stats.read
    assert seen[-1].dropped == stats.dropped


def test_ema_smoothing_and_clean_stop(video, predictor) -> None:
    alpha = 0.5
    with Stream(predictor, str(video), smoothing=alpha, max_frames=4) as s:
        results = list(s)
    raw = [predictor.predict_probs(f) for f in _decoded(video)[:4]]
    ema = raw[0]
    for r, p in zip(results, raw, strict=True):
        ema = p if r.frame_id == 0 else np.float32(alpha) * p + np.float32(1 - alpha) * ema
        np.testing.assert_allclose(r.probs, ema, rtol=0, atol=1e-7)
    stream = Stream(predictor, str(video), realtime=True)
    gated = stream._cap = _GatedCapture(stream._cap, stream, at=3)
    got = []
    for r in stream:
        if not got:  # stop from another thread after the first frame, mid-file
            threading.Thread(target=stream.stop).start()
        got.append(r)
    assert gated.reads <= 4 and 1 <= len(got) <= stream.stats().read <= 3


def test_bad_sources(predictor, tmp_path) -> None:
    with pytest.raises(ImageDecodeError, match="cannot open video"):
        Stream(predictor, str(tmp_path / "missing.avi"))
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"RIFF\0\0\0\0AVI junk" * 10)
    with pytest.raises(ImageDecodeError):
        list(Stream(predictor, str(junk)))
    with pytest.raises(ConfigError, match="smoothing"):
        Stream(predictor, "0", smoothing=1.5)


def test_watch_command(fashion_artifact, video, capsys) -> None:
    assert main(["watch", str(fashion_artifact), str(video), "--json", "--max-frames", "5",
                 "--top-k", "3"]) == 0
    out = capsys.readouterr()
    lines = [json.loads(x) for x in out.out.splitlines()]
    assert [x["frame"] for x in lines] == [0, 1, 2, 3, 4]
    assert all(len(x["predictions"]) == 3 and x["latency_ms"] > 0 for x in lines)
    assert "5 frames processed, 0 dropped" in out.err
    assert main(["watch", str(fashion_artifact), "/nonexistent.avi"]) == 2


class _GatedCapture:
    """The real OpenCV capture, whose read of frame ``at`` (and any later one) waits until
    the stream has been told to stop: the test decides where the stop lands, not a timer."""

    def __init__(self, cap: cv2.VideoCapture, stream: Stream, at: int) -> None:
        self._cap = cap
        self._stream = stream
        self._at = at
        self.reads = 0
        self.inside = threading.Event()  # a read of frame >= at has begun

    def read(self):
        self.reads += 1
        if self.reads > self._at:
            self.inside.set()
            assert self._stream._stop.wait(60), "the test never stopped the stream"
        return self._cap.read()

    def release(self) -> None:
        self._cap.release()

    def __getattr__(self, name: str):
        return getattr(self._cap, name)


class _WatchedCapture(_GatedCapture):
    """A gated capture recording whether release() ever came during a read()."""

    def __init__(self, cap: cv2.VideoCapture, stream: Stream, at: int) -> None:
        super().__init__(cap, stream, at)
        self._inside = 0
        self.released_during_read = False
        self.release_threads: list[str] = []

    def read(self):
        self._inside += 1
        try:
            return super().read()
        finally:
            self._inside -= 1

    def release(self) -> None:
        self.released_during_read |= self._inside > 0
        self.release_threads.append(threading.current_thread().name)
        super().release()


@pytest.mark.parametrize("latest", [False, True])
@pytest.mark.parametrize("at", [1, 5, 20])
def test_stop_from_another_thread_never_releases_during_read(video, predictor, latest,
                                                             at) -> None:
    """stop() from a foreign thread while a frame is being read (the read holds until the
    stop has been requested, so the race is hit every time): the capture is released
    exactly once, by the thread that reads it, never under a read in progress."""
    stream = Stream(predictor, str(video), latest=latest)
    watched = stream._cap = _WatchedCapture(stream._cap, stream, at)

    def stopper() -> None:
        assert watched.inside.wait(60)
        stream.stop()

    thread = threading.Thread(target=stopper)
    thread.start()
    got = [r.frame_id for r in stream]
    thread.join(60)
    assert 0 < len(got) <= at < 32
    assert not watched.released_during_read
    assert len(watched.release_threads) == 1


def test_network_source_open_timeout(monkeypatch) -> None:
    """A camera URL whose server accepts the connection and never answers: the open fails
    instead of blocking the thread, because the open and read timeouts reach OpenCV's
    FFmpeg backend (without them it waits 30 s, or for ever). The timeouts are checked where
    they are handed over, not by timing the open."""
    import socket

    from edgeinfer.runtime import stream as stream_mod
    from edgeinfer.runtime.stream import open_capture

    calls = []
    real = cv2.VideoCapture

    def spy(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(stream_mod.cv2, "VideoCapture", spy)
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        for scheme in ("http", "rtsp"):
            url = f"{scheme}://127.0.0.1:{srv.getsockname()[1]}/cam"
            with pytest.raises(ImageDecodeError, match="cannot open video"):
                open_capture(url, 500, 700)
            assert calls[-1] == (url, cv2.CAP_ANY, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 500,
                                                    cv2.CAP_PROP_READ_TIMEOUT_MSEC, 700])
    finally:
        srv.close()
