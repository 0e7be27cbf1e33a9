"""What the model server's per-request metrics cost, side by side in one run:
``ServerMetrics.observe`` as served (request counter, latency, request and
response sizes) against the counter and latency alone (what it recorded
before payload sizes were added).

    .venv/bin/python bench/metrics_cost.py [--requests 200000]
"""

from __future__ import annotations

import argparse
import timeit

from aiart_runtime.metrics import ServerMetrics


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    metrics = ServerMetrics(model="m", version="1", runtime="sklearn")
    metrics.observe("infer", "ok", 0.001, 100, 100)  # resolve the label children once
    counter = metrics.requests.labels("m", "1", "sklearn", "infer", "ok")
    latency = metrics.latency.labels("m", "1", "sklearn", "infer")

    def full() -> None:
        metrics.observe("infer", "ok", 0.001, 120, 300)

    def counter_and_latency() -> None:
        counter.inc()
        latency.observe(0.001)

    n = args.requests
    # Interleaved rounds, best of each: the machine's noise hits both alike.
    fulls, bases = [], []
    for _ in range(args.rounds):
        fulls.append(timeit.timeit(full, number=n))
        bases.append(timeit.timeit(counter_and_latency, number=n))
    best_full, best_base = min(fulls) / n, min(bases) / n
    print(f"observe (as served):     {best_full * 1e6:6.2f} us per request")
    print(f"counter + latency only:  {best_base * 1e6:6.2f} us per request")
    print(f"ratio: {best_full / best_base:.2f}x; added per request: "
          f"{(best_full - best_base) * 1e6:.2f} us")


if __name__ == "__main__":
    main()
