"""Prometheus metrics: the same names and labels for every runtime.

The per-request series are kept in plain Python numbers and handed to
prometheus_client only when scraped (``RequestCollector``): its own
Counter and Histogram take a lock on every update (nine a request here,
a measurable share of a one-row request; bench/metrics_cost.py). No lock
is needed: every update and every scrape of a model server runs on its one
event-loop thread (HTTP and gRPC alike; a model's code runs there too), but
the payload log's counts, each moved by one thread of its own.
The exposition is what prometheus_client's own types write (names, labels,
buckets, ``_created``), so dashboards and alert rules do not change.
"""

from __future__ import annotations

import platform
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Info
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from . import __version__

if TYPE_CHECKING:
    from .payloads import PayloadLog

LABELS = ("model", "version", "runtime")
# Payload sizes from 256 B to 64 MiB, by powers of four.
SIZE_BUCKETS = tuple(float(256 * 4**i) for i in range(10))
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0)
ROW_BUCKETS = tuple(float(2**i) for i in range(13))
OUTCOMES = ("ok", "client_error", "server_error")


class Histogram:
    """One histogram series: a count per bucket (the last one +Inf) and a sum."""

    __slots__ = ("bounds", "counts", "created", "les", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        # The ``le`` labels as prometheus_client writes them ("0.0005", "+Inf").
        self.les = [floatToGoString(b) for b in (*self.bounds, float("inf"))]  # type: ignore[no-untyped-call]
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        # The first bound >= value: Prometheus' ``le`` buckets.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def add_to(self, family: HistogramMetricFamily, names: Sequence[str],
               labels: Sequence[str]) -> None:
        cumulative, buckets = 0, []
        for le, count in zip(self.les, self.counts, strict=True):
            cumulative += count
            buckets.append((le, cumulative))
        family.add_metric(list(labels), buckets, self.total)
        # HistogramMetricFamily has no ``created``; prometheus_client's own
        # Histogram writes one, and so do we.
        family.samples.append(Sample(f"{family.name}_created",
                                     dict(zip(names, labels, strict=True)),
                                     self.created))


class Gauge:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self) -> None:
        self.value += 1

    def dec(self) -> None:
        self.value -= 1

    def set(self, value: float) -> None:
        self.value = value


class ServerMetrics:
    def __init__(self, *, model: str, version: str, runtime: str) -> None:
        self._values = (model, version, runtime)
        self.inflight = Gauge()
        self.load_seconds = Gauge()
        self.batch_rows = Histogram(ROW_BUCKETS)
        # spec.logging's log, whose counts are read on a scrape.
        self.payloads: PayloadLog | None = None
        # (endpoint, outcome) -> [count, created]; endpoint -> its three histograms.
        self.requests: dict[tuple[str, str], list[float]] = {}
        self.histograms: dict[str, tuple[Histogram, Histogram, Histogram]] = {}
        # The main endpoint's series exist from the start, at zero: a series
        # born with its first request hides that request from Prometheus'
        # increase() (which a canary's gate reads), as it has no zero before it.
        for outcome in OUTCOMES:
            self.requests["infer", outcome] = [0, time.time()]
        self.histograms["infer"] = (Histogram(LATENCY_BUCKETS), Histogram(SIZE_BUCKETS),
                                    Histogram(SIZE_BUCKETS))
        self.registry = CollectorRegistry()
        self.registry.register(RequestCollector(self))
        Info("aiart_build", "aiart runtime build", registry=self.registry).info(
            {"model": model, "version": version, "runtime": runtime,
             "aiart_version": __version__, "python_version": platform.python_version()}
        )

    def observe(self, endpoint: str, outcome: str, seconds: float,
                request_bytes: int, response_bytes: int) -> None:
        counter = self.requests.get((endpoint, outcome))
        if counter is None:
            counter = self.requests[endpoint, outcome] = [0, time.time()]
        counter[0] += 1
        histograms = self.histograms.get(endpoint)
        if histograms is None:
            histograms = self.histograms[endpoint] = (
                Histogram(LATENCY_BUCKETS), Histogram(SIZE_BUCKETS), Histogram(SIZE_BUCKETS))
        histograms[0].observe(seconds)
        histograms[1].observe(request_bytes)
        histograms[2].observe(response_bytes)


class RequestCollector:
    """Writes a ServerMetrics' series as Prometheus metric families on a scrape."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        # Names only, so the registry can refuse a duplicate registration.
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        return self._families()

    def _families(self) -> Iterator[Metric]:
        m, values = self.metrics, list(self.metrics._values)
        requests = CounterMetricFamily(
            "aiart_requests", "Inference requests by endpoint and outcome",
            labels=(*LABELS, "endpoint", "outcome"))
        for (endpoint, outcome), (count, created) in sorted(m.requests.items()):
            requests.add_metric([*values, endpoint, outcome], count, created=created)
        yield requests
        names = (("aiart_request_duration_seconds", "Inference request latency"),
                 ("aiart_request_bytes", "Inference request body size"),
                 ("aiart_response_bytes", "Inference response body size"))
        for index, (name, documentation) in enumerate(names):
            family = HistogramMetricFamily(name, documentation, labels=(*LABELS, "endpoint"))
            for endpoint, histograms in sorted(m.histograms.items()):
                histograms[index].add_to(family, (*LABELS, "endpoint"), [*values, endpoint])
            yield family
        inflight = GaugeMetricFamily("aiart_inflight_requests", "Inference requests in progress",
                                     labels=LABELS)
        inflight.add_metric(values, m.inflight.value)
        yield inflight
        rows = HistogramMetricFamily("aiart_batch_rows",
                                     "Rows per model call when requests are batched",
                                     labels=LABELS)
        m.batch_rows.add_to(rows, LABELS, values)
        yield rows
        load = GaugeMetricFamily("aiart_model_load_seconds", "Time to load the model",
                                 labels=LABELS)
        load.add_metric(values, m.load_seconds.value)
        yield load
        if m.payloads is not None:
            # Its own counts, moved by its writer thread: read, not locked.
            records = CounterMetricFamily(
                "aiart_payload_records",
                "Requests in the payload log's sample, by what became of them: written to "
                "the bucket, dropped (the queue was full), failed (the store refused them)",
                labels=(*LABELS, "outcome"))
            for outcome, count in (("written", m.payloads.written),
                                   ("dropped", m.payloads.dropped),
                                   ("failed", m.payloads.failed)):
                records.add_metric([*values, outcome], count)
            yield records


def outcome_of(status: int) -> str:
    """The ``outcome`` label of a response status: the alert rules count
    server errors against the model, client errors against the caller."""
    return "ok" if status < 400 else ("client_error" if status < 500 else "server_error")
