"""Prometheus metrics: the same names and labels for every runtime."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LABELS = ("model", "version", "runtime")


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
        self.load_seconds = Gauge(
            "aiart_model_load_seconds", "Time to load the model", LABELS, registry=self.registry,
        ).labels(*self._values)
        Info("aiart_build", "aiart runtime build", registry=self.registry).info(
            {"model": model, "version": version, "runtime": runtime}
        )

        # Label lookups take a lock and a dict probe on every call; the hot
        # path reuses the children it has already resolved.
        self._counters: dict[tuple[str, str], Any] = {}
        self._histograms: dict[str, Any] = {}

    def observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        counter = self._counters.get((endpoint, outcome))
        if counter is None:
            counter = self._counters[endpoint, outcome] = self.requests.labels(
                *self._values, endpoint, outcome)
        histogram = self._histograms.get(endpoint)
        if histogram is None:
            histogram = self._histograms[endpoint] = self.latency.labels(*self._values, endpoint)
        counter.inc()
        histogram.observe(seconds)
