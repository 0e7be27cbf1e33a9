"""Prometheus metrics: the same names and labels for every runtime."""

from __future__ import annotations

import platform
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from . import __version__

LABELS = ("model", "version", "runtime")
# Payload sizes from 256 B to 64 MiB, by powers of four.
SIZE_BUCKETS = tuple(float(256 * 4**i) for i in range(10))


class ServerMetrics:
    def __init__(self, *, model: str, version: str, runtime: str) -> None:
        self.registry = CollectorRegistry()
        self._values = (model, version, runtime)
        self.requests = Counter(
            "aiart_requests", "Inference requests by endpoint and outcome",
            (*LABELS, "endpoint", "outcome"), registry=self.registry,
        )
        self.latency = Histogram(
            "aiart_request_duration_seconds", "Inference request latency",
            (*LABELS, "endpoint"), registry=self.registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.inflight = Gauge(
            "aiart_inflight_requests", "Inference requests in progress", LABELS,
            registry=self.registry,
        ).labels(*self._values)
        self.request_bytes = Histogram(
            "aiart_request_bytes", "Inference request body size", (*LABELS, "endpoint"),
            registry=self.registry, buckets=SIZE_BUCKETS,
        )
        self.response_bytes = Histogram(
            "aiart_response_bytes", "Inference response body size", (*LABELS, "endpoint"),
            registry=self.registry, buckets=SIZE_BUCKETS,
        )
        self.batch_rows = Histogram(
            "aiart_batch_rows", "Rows per model call when requests are batched", LABELS,
            registry=self.registry, buckets=tuple(float(2**i) for i in range(13)),
        ).labels(*self._values)
        self.load_seconds = Gauge(
            "aiart_model_load_seconds", "Time to load the model", LABELS, registry=self.registry,
        ).labels(*self._values)
        Info("aiart_build", "aiart runtime build", registry=self.registry).info(
            {"model": model, "version": version, "runtime": runtime,
             "aiart_version": __version__, "python_version": platform.python_version()}
        )

        # Label lookups take a lock and a dict probe on every call; the hot
        # path reuses the children it has already resolved.
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, tuple[Any, Any, Any]] = {}

    def observe(self, endpoint: str, outcome: str, seconds: float,
                request_bytes: int, response_bytes: int) -> None:
        counter = self._counters.get((endpoint, outcome))
        if counter is None:
            counter = self._counters[endpoint, outcome] = self.requests.labels(
                *self._values, endpoint, outcome)
        histograms = self._histograms.get(endpoint)
        if histograms is None:
            histograms = self._histograms[endpoint] = (
                self.latency.labels(*self._values, endpoint),
                self.request_bytes.labels(*self._values, endpoint),
                self.response_bytes.labels(*self._values, endpoint))
        counter.inc()
        histograms[0].observe(seconds)
        histograms[1].observe(request_bytes)
        histograms[2].observe(response_bytes)


def outcome_of(status: int) -> str:
    """The ``outcome`` label of a response status: the alert rules count
    server errors against the model, client errors against the caller."""
    return "ok" if status < 400 else ("client_error" if status < 500 else "server_error")
