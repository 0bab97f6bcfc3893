"""Camera and video streams: predictions on the latest frame, so latency never grows.

    from edgeinfer import Predictor
    from edgeinfer.runtime.stream import Stream

    with Stream(Predictor("fashion.onnx"), 0, smoothing=0.3) as stream:   # camera 0
        for r in stream:              # StreamResult(frame_id, timestamp, predictions, ...)
            print(r.frame_id, r.predictions[0].label, f"{r.latency_ms:.1f} ms")
    print(stream.stats())             # read, processed, dropped, fps, latency p50/p99

With ``Predictor(..., monitor=True)`` every processed frame (unsmoothed probabilities and
the raw frame) feeds the predictor's field monitor: ``StreamResult.alarm`` follows it
frame by frame, ``stats().monitor`` / ``.estimated_accuracy`` / ``.alarm`` give its report.

Why latest-frame semantics: a camera delivers frames at its own pace. If the model is
slower, a plain read-predict loop falls further behind with every frame (OpenCV and the
driver buffer them), and the prediction shown is for a scene seconds old. Here a reader
thread keeps only the newest frame; a frame that is replaced before the model got to it
is *dropped* and counted, and the latency from capture to prediction stays one model call
at most. For a video file the default is the opposite — every frame, in order (a file
does not run away) — unless ``realtime=True`` replays it at its own frame rate, as a
camera would deliver it, which is how the dropping is tested without a camera.

Optional temporal smoothing: an exponential moving average of the probabilities
(``smoothing=alpha``, the weight of the newest frame), which steadies a flickering top-1
on a static scene at the cost of reacting ``~1/alpha`` frames later to a change.

Thread safety: an OpenCV capture must not be released while another thread is inside its
``read()`` (FFmpeg frees the decoder under it). The thread that reads owns the release:
``stop()`` from any other thread only sets a flag when a read is in progress, and the
reading thread releases the capture as soon as that read returns; when nobody is reading,
``stop()`` releases it itself. Network sources (``rtsp://``, ``http://``) are opened with
OpenCV's open and read timeouts, so that read always returns.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from edgeinfer.errors import ConfigError, ImageDecodeError, positive_int
from edgeinfer.runtime.monitor import Monitor
from edgeinfer.runtime.predictor import Predictor
from edgeinfer.runtime.topk import Prediction, rank

#: Latencies kept for the percentiles in ``stats()`` (the most recent ones).
LATENCY_WINDOW = 10_000
#: Network sources: give up opening after this long, and a read that gets no frame for this
#: long ends the stream (OpenCV's FFmpeg backend otherwise waits ~30 s, or for ever).
OPEN_TIMEOUT_MS = 10_000
READ_TIMEOUT_MS = 5_000


@dataclass(frozen=True)
class StreamResult:
    """One processed frame."""

    frame_id: int  # position in the source, counting dropped frames: gaps show the drops
    timestamp: float  # wall-clock time (time.time()) when the frame was captured
    predictions: list[Prediction]
    probs: np.ndarray  # float32 [K], smoothed when smoothing is on
    latency_ms: float  # capture -> prediction ready (waiting + model)
    infer_ms: float  # the prediction alone
    fps: float  # processed frames per second since the stream started
    dropped: int  # frames dropped so far
    #: the frame itself (not a copy: the reader hands each frame over once), for overlays
    frame: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: the field monitor's alarm after this frame (None: the predictor has no monitor); the
    #: estimate is in ``stats()``, as a report costs more than a frame should pay
    alarm: bool | None = None


@dataclass(frozen=True)
class StreamStats:
    read: int
    processed: int
    dropped: int
    seconds: float
    fps: float
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    #: the field monitor's report (``MonitorReport.to_dict()``: estimated_accuracy, interval,
    #: alarm, drift, cause) when the predictor has one, else None
    monitor: dict[str, Any] | None = None

    @property
    def estimated_accuracy(self) -> float | None:
        return self.monitor["estimated_accuracy"] if self.monitor else None

    @property
    def alarm(self) -> bool | None:
        return bool(self.monitor["alarm"]) if self.monitor else None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def summary(self) -> str:
        """The end-of-stream line ``watch`` prints (a classifier's or a detector's stream)."""
        p50 = f"{self.latency_p50_ms:.2f}" if self.latency_p50_ms is not None else "-"
        p99 = f"{self.latency_p99_ms:.2f}" if self.latency_p99_ms is not None else "-"
        return (f"{self.processed} frames processed, {self.dropped} dropped, {self.read} read "
                f"in {self.seconds:.2f} s ({self.fps:.1f} fps); latency p50 {p50} ms, p99 "
                f"{p99} ms")


def open_capture(source: str | int, open_timeout_ms: int = OPEN_TIMEOUT_MS,
                 read_timeout_ms: int = READ_TIMEOUT_MS) -> cv2.VideoCapture:
    """A camera index (``0`` or ``"0"``), a video file or a stream URL (``rtsp://...``).

    URLs are opened with ``CAP_PROP_OPEN_TIMEOUT_MSEC`` / ``CAP_PROP_READ_TIMEOUT_MSEC``
    (passed at open time, as the FFmpeg backend requires), so an unreachable or stalled
    camera fails or ends within those times instead of blocking a thread for good.
    """
    if isinstance(source, int) and not isinstance(source, bool):
        cap = cv2.VideoCapture(source)
    elif isinstance(source, str) and source:
        if source.isdigit():
            cap = cv2.VideoCapture(int(source))
        elif "://" in source:
            cap = cv2.VideoCapture(source, cv2.CAP_ANY, network_params(open_timeout_ms,
                                                                       read_timeout_ms))
        else:
            cap = cv2.VideoCapture(source)
    else:
        raise ConfigError(f"a stream source is a camera index, a video file or a URL, got "
                          f"{source!r}")
    if not cap.isOpened():
        raise ImageDecodeError(f"cannot open video {source!r}: not a readable video file, "
                               "stream URL or camera (check the path, URL or device index)")
    return cap


def network_params(open_timeout_ms: int = OPEN_TIMEOUT_MS,
                   read_timeout_ms: int = READ_TIMEOUT_MS) -> list[int]:
    """The ``params`` of ``cv2.VideoCapture(url, api, params)`` that bound open and read."""
    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, positive_int("open_timeout_ms", open_timeout_ms),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, positive_int("read_timeout_ms", read_timeout_ms)]


def announced_frames(cap: cv2.VideoCapture) -> int:
    """The frame count a file's container announces (0: none), so a file that ends early
    is told from one that ends where it should: a cut AVI still opens and announces its
    full count. FFmpeg takes the stream's count, or duration x frame rate where the
    container keeps none (WebM, Matroska); measured exact for the containers OpenCV writes
    (docs/detection/field.md)."""
    n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
    return int(n) if np.isfinite(n) and 0 < n < 2**31 else 0


def is_live(source: str | int) -> bool:
    """A camera or a network stream (frames arrive in real time), not a file."""
    if isinstance(source, int):
        return True
    return source.isdigit() or "://" in source


class Stream:
    """Predictions over an OpenCV capture; iterate it, or ``run(callback)``.

    ``latest``: keep only the newest frame (drop stale ones); default: on for cameras and
    URLs, off for files. ``realtime``: replay a file at its own frame rate (implies
    ``latest`` unless set). ``smoothing``: EMA weight of the newest frame in (0, 1].
    ``max_frames``: stop after this many processed frames. ``stop()`` ends the stream from
    any thread; leaving a ``with`` block stops it and releases the capture.
    """

    def __init__(self, predictor: Predictor, source: str | int, *, top_k: int = 1,
                 smoothing: float | None = None, latest: bool | None = None,
                 realtime: bool = False, max_frames: int | None = None) -> None:
        self._top_k = positive_int("top_k", top_k)
        if smoothing is not None and (isinstance(smoothing, bool)
                                      or not isinstance(smoothing, (int, float))
                                      or not 0 < smoothing <= 1):
            raise ConfigError(f"smoothing is the EMA weight of the newest frame, in (0, 1]; "
                              f"got {smoothing!r}")
        self._max_frames = None if max_frames is None else positive_int("max_frames", max_frames)
        self._predictor = predictor
        self._source = source
        self._smoothing = smoothing
        self._realtime = bool(realtime)
        self._latest = (is_live(source) or self._realtime) if latest is None else bool(latest)
        self._cap = open_capture(source)
        if is_live(source):
            self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # honoured by V4L2 and some others
        self._announced = 0 if is_live(source) else announced_frames(self._cap)
        self._stop = threading.Event()
        self._cap_lock = threading.Lock()  # held by the thread inside cap.read()
        self._released = False
        self._cond = threading.Condition()
        self._slot: tuple[int, float, np.ndarray] | None = None
        self._eof = False
        self._reader: threading.Thread | None = None
        self._read = self._processed = self._dropped = 0
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._start: float | None = None
        self._end: float | None = None
        self._ema: np.ndarray | None = None
        self._started = False

    # ------------------------------------------------------------------ public
    @property
    def monitor(self) -> Monitor | None:
        """The predictor's field monitor (``Predictor(..., monitor=True)``): every processed
        frame feeds it, unsmoothed."""
        return self._predictor.monitor

    @property
    def latest(self) -> bool:
        """True when stale frames are dropped (latest-frame semantics)."""
        return self._latest

    def __iter__(self) -> Iterator[StreamResult]:
        if self._started:
            raise ConfigError("a Stream can be iterated once; open a new one")
        self._started = True
        self._start = time.perf_counter()
        frames = self._threaded() if self._latest else self._sequential()
        try:
            for frame_id, ts, t_cap, frame in frames:
                yield self._predict(frame_id, ts, t_cap, frame)
                if self._max_frames is not None and self._processed >= self._max_frames:
                    break
        finally:
            self._end = time.perf_counter()
            self.stop()

    def run(self, callback: Callable[[StreamResult], Any]) -> StreamStats:
        """Call ``callback`` with each result until the stream ends; return the stats."""
        for r in self:
            callback(r)
        return self.stats()

    def stop(self) -> None:
        """End the stream, from any thread; the capture is released by whoever reads it.

        If a thread is inside ``cap.read()`` right now, it releases the capture when that
        read returns (bounded by the read timeout for network sources); otherwise it is
        released here. Safe to call several times.
        """
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._cap_lock.acquire(blocking=False):  # nobody is reading: release it here
            try:
                self._release_locked()
            finally:
                self._cap_lock.release()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=5)

    def stats(self) -> StreamStats:
        end = self._end if self._end is not None else time.perf_counter()
        secs = end - self._start if self._start is not None else 0.0
        lat = np.asarray(self._latencies) if self._latencies else None
        return StreamStats(
            read=self._read, processed=self._processed, dropped=self._dropped, seconds=secs,
            fps=self._processed / secs if secs > 0 else 0.0,
            latency_p50_ms=float(np.percentile(lat, 50)) if lat is not None else None,
            latency_p99_ms=float(np.percentile(lat, 99)) if lat is not None else None,
            latency_max_ms=float(lat.max()) if lat is not None else None,
            monitor=None if self.monitor is None else self.monitor.report().to_dict())

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ frames
    def _release_locked(self) -> None:
        if not self._released:
            self._released = True
            self._cap.release()

    def _grab(self) -> tuple[bool, np.ndarray | None]:
        with self._cap_lock:
            if self._released or self._stop.is_set():
                self._release_locked()
                return False, None
            ok, frame = self._cap.read()
            if self._stop.is_set():  # stop() came while this thread was inside read()
                self._release_locked()
                return False, None
        if ok and frame is not None:
            self._read += 1
        return ok and frame is not None, frame

    def _sequential(self) -> Iterator[tuple[int, float, float, np.ndarray]]:
        while not self._stop.is_set():
            ok, frame = self._grab()
            if not ok:
                self._no_frames_check()
                return
            yield self._read - 1, time.time(), time.perf_counter(), frame

    def _threaded(self) -> Iterator[tuple[int, float, float, np.ndarray]]:
        self._reader = threading.Thread(target=self._read_loop, name="edgeinfer-stream",
                                        daemon=True)
        self._reader.start()
        while True:
            with self._cond:
                while self._slot is None and not self._eof and not self._stop.is_set():
                    self._cond.wait()
                if self._slot is None:
                    break
                item, self._slot = self._slot, None
            yield item
        self._no_frames_check()

    def _read_loop(self) -> None:
        fps = self._cap.get(cv2.CAP_PROP_FPS) if self._realtime else 0.0
        period = 1.0 / fps if fps and fps > 0 else 0.0
        t0 = time.perf_counter()
        try:
            while not self._stop.is_set():
                ok, frame = self._grab()
                if not ok:
                    break
                if period:  # deliver frame i at t0 + i * period, as the camera would have
                    delay = t0 + (self._read - 1) * period - time.perf_counter()
                    if delay > 0:
                        self._stop.wait(delay)
                with self._cond:
                    if self._slot is not None:
                        self._dropped += 1
                    self._slot = (self._read - 1, time.time(), time.perf_counter(), frame)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self._eof = True
                self._cond.notify_all()

    def _no_frames_check(self) -> None:
        if self._read == 0 and not self._stop.is_set():
            raise ImageDecodeError(f"video {self._source!r} has no decodable frame")
        # it stopped early; a slack of 2% (at least 1 frame) because a container without a
        # count announces duration x frame rate, which a variable frame rate can overstate
        short = self._announced - self._read
        if short > max(1, self._announced // 50) and not self._stop.is_set():
            raise ImageDecodeError(
                f"video {self._source!r} ended after {self._read} of the {self._announced} "
                "frames its header announces: the file is truncated or damaged")

    # ------------------------------------------------------------------ predictions
    def _predict(self, frame_id: int, ts: float, t_cap: float, frame: np.ndarray) -> StreamResult:
        t = time.perf_counter()
        probs = self._predictor.predict_probs(frame)
        if self._smoothing is not None:
            a = np.float32(self._smoothing)
            self._ema = probs.copy() if self._ema is None else a * probs + (1 - a) * self._ema
            probs = self._ema
        now = time.perf_counter()
        self._processed += 1
        latency = (now - t_cap) * 1e3
        self._latencies.append(latency)
        m = self._predictor.monitor
        return StreamResult(frame_id, ts, rank(probs, self._predictor.labels, self._top_k),
                            probs, latency, (now - t) * 1e3,
                            self._processed / (now - self._start), self._dropped, frame,
                            alarm=None if m is None else m.alarm)
