"""A canary's gate figures and a scalable version's load, read from the
stack's Prometheus.

The model servers export ``aiart_requests_total`` (by outcome) and
``aiart_request_duration_seconds`` (runtimes/aiart_runtime/metrics.py);
over a step, a version's requests, server errors and p99 latency are three
instant queries. Prometheus scrapes every 5 s (monitoring/prometheus.yml),
so a step shorter than a few scrapes reads too little to judge.
"""

from __future__ import annotations

import math

import aiohttp

from aiart.core.render import traefik_name
from aiart.core.rollout import Figures
from aiart.core.scaling import Load
from aiart.core.spec import ScaleMetric, Scaling


def queries(model: str, version: str, seconds: float) -> dict[str, str]:
    """PromQL for one version over the last ``seconds`` (model names and
    versions are DNS labels: nothing to escape)."""
    window = f"{max(int(seconds), 10)}s"
    match = f'model="{model}",version="{version}"'
    return {
        "requests": f"sum(increase(aiart_requests_total{{{match}}}[{window}]))",
        "errors": f'sum(increase(aiart_requests_total{{{match},outcome="server_error"}}'
                  f"[{window}]))",
        "p99": "histogram_quantile(0.99, sum by (le) (increase("
               f"aiart_request_duration_seconds_bucket{{{match}}}[{window}])))",
    }


def load_queries(model: str, version: str, scaling: Scaling) -> dict[str, str]:
    """PromQL for a version's load, as the gateway saw it: in front of the
    model servers, so that requests queued at a busy replica count too
    (Knative measures at its queue-proxy for the same reason). Concurrency
    is Little's law: the time requests spent in flight per second is the
    mean number in flight. Only inference counts (POST: HTTP and gRPC);
    the operator's GET probes would keep an idle version awake."""
    match = f'service="{traefik_name(model, version)}@swarm",method="POST"'
    series = ("traefik_service_request_duration_seconds_sum"
              if scaling.metric is ScaleMetric.CONCURRENCY else "traefik_service_requests_total")
    return {
        "stable": f"sum(rate({series}{{{match}}}[{scaling.stable_seconds}s]))",
        "panic": f"sum(rate({series}{{{match}}}[{scaling.panic_seconds}s]))",
        "recent": f"sum(increase(traefik_service_requests_total{{{match}}}"
                  f"[{scaling.idle_seconds}s]))",
    }


class PrometheusGate:
    def __init__(self, url: str, session: aiohttp.ClientSession,
                 auth: aiohttp.BasicAuth | None = None) -> None:
        self.url = url
        self.session = session
        self.auth = auth

    async def _scalar(self, query: str) -> float | None:
        async with self.session.get(f"{self.url}/api/v1/query", params={"query": query},
                                    auth=self.auth,
                                    timeout=aiohttp.ClientTimeout(total=5)) as response:
            if response.status != 200:
                raise RuntimeError(f"Prometheus answered {response.status}: "
                                   f"{(await response.text())[:200]}")
            body = await response.json()
        result = body.get("data", {}).get("result", [])
        if not result:
            return None  # no series: nothing was counted
        return float(result[0]["value"][1])

    async def figures(self, model: str, version: str, seconds: float) -> Figures | str:
        """The version's figures over the last ``seconds``, or why they could not be read."""
        try:
            values = {name: await self._scalar(q)
                      for name, q in queries(model, version, seconds).items()}
        except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError, KeyError) as exc:
            return f"{type(exc).__name__}: {exc}"
        p99 = values["p99"]
        return Figures(requests=values["requests"] or 0.0, errors=values["errors"] or 0.0,
                       p99_ms=None if p99 is None or math.isnan(p99) else p99 * 1000)

    async def load(self, model: str, version: str, scaling: Scaling) -> Load | str:
        """The version's load now, or why it could not be read. No series at
        all: no request was ever counted, a load of zero."""
        try:
            values = {name: await self._scalar(q)
                      for name, q in load_queries(model, version, scaling).items()}
        except (aiohttp.ClientError, TimeoutError, RuntimeError, ValueError, KeyError) as exc:
            return f"{type(exc).__name__}: {exc}"
        return Load(stable=values["stable"] or 0.0, panic=values["panic"] or 0.0,
                    recent=values["recent"] or 0.0)
