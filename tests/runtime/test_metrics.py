"""The model server's metrics (runtimes/aiart_runtime/metrics.py) are kept in
plain numbers and written out on a scrape: what a scrape reads must be what
prometheus_client's own Counter, Histogram and Gauge would have written for
the same updates, so dashboards and alert rules see no difference."""

from __future__ import annotations

import re

from aiart_runtime.metrics import (
    LABELS,
    LATENCY_BUCKETS,
    OUTCOMES,
    ROW_BUCKETS,
    SIZE_BUCKETS,
    ServerMetrics,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

VALUES = ("iris", "1", "sklearn")
ENDPOINTS = st.sampled_from(["infer", "predict", "grpc"])
OUTCOME_CHOICES = st.sampled_from(OUTCOMES)
# Values on the bucket bounds themselves among them: ``le`` means <=.
SECONDS = st.one_of(st.sampled_from(LATENCY_BUCKETS), st.floats(0, 10, allow_nan=False))
SIZES = st.one_of(st.sampled_from([int(b) for b in SIZE_BUCKETS]), st.integers(0, 2**31))
CALLS = st.lists(st.tuples(ENDPOINTS, OUTCOME_CHOICES, SECONDS, SIZES, SIZES), max_size=40)


def reference(calls: list[tuple[str, str, float, int, int]], rows: list[int],
              inflight: int) -> str:
    """The same updates through prometheus_client's own types."""
    registry = CollectorRegistry()
    requests = Counter("aiart_requests", "Inference requests by endpoint and outcome",
                       (*LABELS, "endpoint", "outcome"), registry=registry)
    histograms = [Histogram(name, doc, (*LABELS, "endpoint"), registry=registry, buckets=b)
                  for name, doc, b in (
                      ("aiart_request_duration_seconds", "Inference request latency",
                       LATENCY_BUCKETS),
                      ("aiart_request_bytes", "Inference request body size", SIZE_BUCKETS),
                      ("aiart_response_bytes", "Inference response body size", SIZE_BUCKETS))]
    gauge = Gauge("aiart_inflight_requests", "Inference requests in progress", LABELS,
                  registry=registry).labels(*VALUES)
    batch = Histogram("aiart_batch_rows", "Rows per model call when requests are batched",
                      LABELS, registry=registry, buckets=ROW_BUCKETS).labels(*VALUES)
    Gauge("aiart_model_load_seconds", "Time to load the model", LABELS,
          registry=registry).labels(*VALUES).set(1.5)
    # The server's main endpoint starts with its series at zero.
    for outcome in OUTCOMES:
        requests.labels(*VALUES, "infer", outcome)
    for histogram in histograms:
        histogram.labels(*VALUES, "infer")
    for endpoint, outcome, seconds, sent, answered in calls:
        requests.labels(*VALUES, endpoint, outcome).inc()
        for histogram, value in zip(histograms, (seconds, sent, answered), strict=True):
            histogram.labels(*VALUES, endpoint).observe(value)
    for n in rows:
        batch.observe(n)
    gauge.set(inflight)
    return generate_latest(registry).decode()


def lines(text: str) -> list[str]:
    # Creation times differ by when each series was made; the rest must not.
    return sorted(re.sub(r"(_created\{.*\}) \S+$", r"\1 T", line)
                  for line in text.splitlines() if "aiart_build_info" not in line)


@settings(max_examples=60, deadline=None)
@given(calls=CALLS, rows=st.lists(st.integers(1, 5000), max_size=10),
       inflight=st.integers(0, 5))
def test_a_scrape_reads_what_prometheus_client_would_write(
        calls: list[tuple[str, str, float, int, int]], rows: list[int], inflight: int) -> None:
    metrics = ServerMetrics(model=VALUES[0], version=VALUES[1], runtime=VALUES[2])
    for call in calls:
        metrics.observe(*call)
    for n in rows:
        metrics.batch_rows.observe(n)
    for _ in range(inflight + 2):
        metrics.inflight.inc()
    metrics.inflight.dec()
    metrics.inflight.dec()
    metrics.load_seconds.set(1.5)
    assert lines(generate_latest(metrics.registry).decode()) == lines(
        reference(calls, rows, inflight))


def test_build_info_creation_times_and_series_at_zero_from_the_start() -> None:
    metrics = ServerMetrics(model="iris", version="1", runtime="sklearn")
    text = generate_latest(metrics.registry).decode()
    for outcome in OUTCOMES:
        assert re.search(rf'^aiart_requests_total{{.*outcome="{outcome}".*}} 0\.0$', text, re.M)
    metrics.observe("infer", "ok", 0.001, 10, 10)
    text = generate_latest(metrics.registry).decode()
    assert re.search(r'^aiart_build_info\{.*model="iris".*\} 1\.0$', text, re.M)
    created = re.findall(r"^aiart_(requests|request_duration_seconds)_created\{.*\} (\S+)$",
                         text, re.M)
    assert len(created) == 4 and all(float(t) > 1.6e9 for _, t in created)
