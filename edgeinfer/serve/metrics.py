"""Prometheus metrics of one server: requests, errors by type, latency, batch sizes, in-flight.

Each app gets its own ``CollectorRegistry`` (not the process-global default), so several
servers or tests in one process never share or double-register counters. Label values
are bounded sets — route templates, known model names, error class names — never raw
paths, so a fuzzer cannot blow up the number of series.
"""

from __future__ import annotations

from edgeinfer.errors import require

require("prometheus_client", "serve", "the HTTP server's metrics")

from collections.abc import Callable  # noqa: E402

from prometheus_client import (  # noqa: E402 - after the extra check
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from edgeinfer.runtime.monitor import MonitorReport  # noqa: E402

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0,
                   5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The server's counters; ``render()`` gives the text exposition format."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, inflight_bytes: Callable[[], float] | None = None) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("edgeinfer_requests", "HTTP requests answered",
                                ["route", "model", "status"], registry=r)
        self.errors = Counter("edgeinfer_errors", "Refused or failed requests by error type",
                              ["type"], registry=r)
        self.latency = Histogram("edgeinfer_request_seconds",
                                 "Request latency, admission to response", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch = Histogram("edgeinfer_batch_frames", "Frames per backend call", ["model"],
                               buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("edgeinfer_inference_seconds", "Backend call time",
                                   ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.images = Counter("edgeinfer_images", "Images (frames) predicted", ["model"],
                              registry=r)
        self.in_flight = Gauge("edgeinfer_in_flight", "Requests admitted and not yet answered",
                               registry=r)
        self.monitor_estimate = Gauge("edgeinfer_monitor_estimated_accuracy",
                                      "Field monitor: accuracy estimated without labels",
                                      ["model"], registry=r)
        self.monitor_reference = Gauge("edgeinfer_monitor_reference_accuracy",
                                       "Field monitor: accuracy on the reference frames",
                                       ["model"], registry=r)
        self.monitor_alarm = Gauge("edgeinfer_monitor_alarm",
                                   "Field monitor: 1 while the estimated accuracy has fallen",
                                   ["model"], registry=r)
        self.monitor_frames = Gauge("edgeinfer_monitor_frames", "Field monitor: frames seen",
                                    ["model"], registry=r)
        self.monitor_drift = Gauge("edgeinfer_monitor_drift",
                                   "Field monitor: drift per signal (frame signals and "
                                   "confidence in reference sigmas, class_mix as a z-score)",
                                   ["model", "signal"], registry=r)
        if inflight_bytes is not None:
            Gauge("edgeinfer_inflight_bytes", "Bytes held by requests in flight (bodies, frames)",
                  registry=r).set_function(inflight_bytes)

    def observer(self, model: str):
        """A (frames, seconds) callback for one model's scheduler."""
        batch = self.batch.labels(model)
        inference = self.inference.labels(model)
        images = self.images.labels(model)

        def observe(frames: int, seconds: float) -> None:
            batch.observe(frames)
            inference.observe(seconds)
            images.inc(frames)

        return observe

    def set_monitor(self, model: str, report: MonitorReport) -> None:
        """The monitor gauges of one model, set from its report at scrape time (the signal
        names come from a fixed tuple: bounded series)."""
        if report.estimated_accuracy is not None:
            self.monitor_estimate.labels(model).set(report.estimated_accuracy)
        if report.reference_accuracy is not None:
            self.monitor_reference.labels(model).set(report.reference_accuracy)
        self.monitor_alarm.labels(model).set(1 if report.alarm else 0)
        self.monitor_frames.labels(model).set(report.frames)
        for signal, value in report.drift.items():
            self.monitor_drift.labels(model, signal).set(value)

    def render(self) -> bytes:
        return generate_latest(self.registry)
