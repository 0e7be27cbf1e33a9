"""What the API reads from the stack's Prometheus (the dashboard's charts)
and where it passes the dashboard's inference calls (the gateway), each
with what the caller or the stack gives it."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx

from aiart.core import charts

USER = "aiart"  # the monitoring password's user (hack/stack.sh)


class PrometheusCharts:
    """A model's series over the last minutes, by range queries."""

    def __init__(self, url: str, password: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.client = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=10,
                                        auth=(USER, password) if password else None,
                                        transport=transport)

    async def model(self, model: str, minutes: int) -> dict[str, Any]:
        end = time.time()
        step = charts.step_seconds(minutes)
        start = end - minutes * 60
        out: dict[str, Any] = {"minutes": minutes, "step": step, "start": round(start, 3),
                               "end": round(end, 3), "series": {}}
        for name, query in charts.chart_queries(model).items():
            answer = await self._get("/api/v1/query_range", {
                "query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step})
            out["series"][name] = charts.series(answer)
        total = await self._get("/api/v1/query", {
            "query": charts.total_query(model, minutes), "time": f"{end:.3f}"})
        result = total.get("data", {}).get("result", [])
        out["total"] = round(float(result[0]["value"][1])) if result else 0
        return out

    async def _get(self, path: str, params: Mapping[str, Any]) -> Any:
        answer = await self.client.get(path, params=dict(params))
        if answer.status_code != 200:
            raise RuntimeError(f"Prometheus answered {answer.status_code}: {answer.text[:200]}")
        return answer.json()


class GatewayPasser:
    """An inference call, passed to the gateway as the caller's own: with
    its credential, to the model's route; the answer comes back as it is."""

    def __init__(self, url: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.client = httpx.AsyncClient(base_url=url.rstrip("/"), timeout=60,
                                        transport=transport)

    async def call(self, method: str, model: str, version: str | None, path: str,
                   body: bytes, headers: Mapping[str, str]) -> httpx.Response:
        """``path`` under the model's (or the version's) protocol routes."""
        base = f"/v2/models/{model}" + (f"/versions/{version}" if version else "")
        return await self.client.request(method, f"{base}/{path}".rstrip("/"),
                                          content=body or None, headers=dict(headers))
