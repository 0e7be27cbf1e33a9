"""What the model server's per-request metrics cost, side by side in one run:
``ServerMetrics.observe`` as served (request counter, latency, request and
response sizes, kept in plain numbers) and the in-flight gauge, against the
same series kept by prometheus_client's own Counter, Histogram and Gauge
(what the server used before: each update takes a lock).

    .venv/bin/python bench/metrics_cost.py [--requests 200000]
"""

from __future__ import annotations

import argparse
import timeit

from aiart_runtime.metrics import LABELS, LATENCY_BUCKETS, SIZE_BUCKETS, ServerMetrics
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    metrics = ServerMetrics(model="m", version="1", runtime="sklearn")

    def served() -> None:
        metrics.inflight.inc()
        metrics.inflight.dec()
        metrics.observe("infer", "ok", 0.001, 120, 300)

    registry = CollectorRegistry()
    values = ("m", "1", "sklearn")
    # Label children resolved once, as the server did.
    counter = Counter("c", "", (*LABELS, "endpoint", "outcome"), registry=registry).labels(
        *values, "infer", "ok")
    latency, request_bytes, response_bytes = (
        Histogram(name, "", (*LABELS, "endpoint"), registry=registry, buckets=buckets).labels(
            *values, "infer")
        for name, buckets in (("l", LATENCY_BUCKETS), ("q", SIZE_BUCKETS), ("r", SIZE_BUCKETS)))
    inflight = Gauge("g", "", LABELS, registry=registry).labels(*values)

    def locked() -> None:
        inflight.inc()
        inflight.dec()
        counter.inc()
        latency.observe(0.001)
        request_bytes.observe(120)
        response_bytes.observe(300)

    n = args.requests
    # Interleaved rounds, best of each: the machine's noise hits both alike.
    ours, theirs = [], []
    for _ in range(args.rounds):
        ours.append(timeit.timeit(served, number=n))
        theirs.append(timeit.timeit(locked, number=n))
    best_ours, best_theirs = min(ours) / n, min(theirs) / n
    print(f"as served (plain numbers):      {best_ours * 1e6:6.2f} us per request")
    print(f"prometheus_client's own types:  {best_theirs * 1e6:6.2f} us per request")
    print(f"ratio: {best_ours / best_theirs:.2f}x; saved per request: "
          f"{(best_theirs - best_ours) * 1e6:.2f} us")


if __name__ == "__main__":
    main()
