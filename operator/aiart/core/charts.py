"""A model's figures over the last minutes, for the dashboard's charts
(``GET /api/v1/models/<name>/metrics``): PromQL for Prometheus' range
queries, and its answers made into series. Pure: no I/O.

The figures are the model servers' own (runtimes/aiart_runtime/metrics.py),
all versions together: what the model answered, not what the gateway
refused before it (a wrong key, a rate limit).
"""

from __future__ import annotations

import math
from typing import Any

# About this many points per series, whatever the span.
POINTS = 120
MIN_STEP_SECONDS = 5  # Prometheus scrapes model servers every 5 s
MAX_MINUTES = 24 * 60
RATE_WINDOW = "1m"


def chart_queries(model: str) -> dict[str, str]:
    """PromQL per series (a model name is a DNS label: nothing to escape)."""
    match = f'model="{model}"'
    buckets = f"aiart_request_duration_seconds_bucket{{{match}}}[{RATE_WINDOW}]"

    def latency(quantile: str) -> str:
        return f"histogram_quantile({quantile}, sum by (le) (rate({buckets})))"

    return {
        "requests": f"sum(rate(aiart_requests_total{{{match}}}[{RATE_WINDOW}]))",
        "errors": f'sum(rate(aiart_requests_total{{{match},outcome="server_error"}}'
                  f"[{RATE_WINDOW}]))",
        "p50": latency("0.5"),
        "p99": latency("0.99"),
    }


def total_query(model: str, minutes: int) -> str:
    """The model's requests over the whole span, at its end."""
    return f'sum(increase(aiart_requests_total{{model="{model}"}}[{minutes}m]))'


def step_seconds(minutes: int) -> int:
    return max(MIN_STEP_SECONDS, minutes * 60 // POINTS)


def series(answer: Any) -> list[tuple[float, float | None]]:
    """Points of the first series of a range query's answer (``data.result``
    of a matrix); none when nothing was counted. Not-a-number (a quantile of
    no requests) is a gap."""
    try:
        result = answer["data"]["result"]
    except (KeyError, TypeError):
        raise ValueError("not a Prometheus range answer") from None
    if not result:
        return []
    points: list[tuple[float, float | None]] = []
    for stamp, text in result[0].get("values", []):
        value = float(text)
        points.append((float(stamp), None if math.isnan(value) or math.isinf(value)
                       else value))
    return points
