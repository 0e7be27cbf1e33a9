"""Reads Alertmanager's active alerts and mirrors them on model configs.

Polling rather than a webhook into the operator: the labels converge on what
Alertmanager holds now, so a restart of either side, or a lost notification,
leaves nothing stale for longer than one poll.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from aiart.control.metrics import OperatorMetrics
from aiart.control.ports import Cluster
from aiart.core import labels as L
from aiart.core.alerts import alerts_for, firing_alerts, with_alerts
from aiart.core.spec import ManifestError, parse_manifest

log = logging.getLogger("aiart.alerts")
TIMEOUT = aiohttp.ClientTimeout(total=5)


class AlertWatch:
    def __init__(self, cluster: Cluster, session: aiohttp.ClientSession, url: str, *,
                 interval: float, metrics: OperatorMetrics | None = None,
                 auth: aiohttp.BasicAuth | None = None) -> None:
        self.cluster = cluster
        self.auth = auth
        self.session = session
        self.url = url.rstrip("/")
        self.interval = interval
        self.metrics = metrics
        self._versions: dict[str, str | None] = {}  # config id -> manifest version
        self._failing = False

    async def read_alerts(self) -> list[dict[str, Any]]:
        params = {"active": "true", "silenced": "false", "inhibited": "false"}
        async with self.session.get(f"{self.url}/api/v2/alerts", params=params,
                                    auth=self.auth, timeout=TIMEOUT) as response:
            response.raise_for_status()
            body = await response.json()
        if not isinstance(body, list):
            raise ValueError("Alertmanager's /api/v2/alerts did not answer a list")
        return body

    def version_of(self, config_id: str, data: bytes) -> str | None:
        # A config's data never changes, so its version is parsed once.
        if config_id not in self._versions:
            try:
                self._versions[config_id] = parse_manifest(data).metadata.version
            except ManifestError:
                self._versions[config_id] = None
        return self._versions[config_id]

    async def sync_once(self) -> int:
        """One poll: write every label that differs; return how many changed."""
        firing = firing_alerts(await self.read_alerts())
        changed = 0
        configs = await self.cluster.list_model_configs()
        for config in configs:
            model = config.labels.get(L.MODEL, "")
            version = self.version_of(config.id, config.data)
            if not model or version is None:
                continue
            wanted = with_alerts(config.labels, alerts_for(firing, model, version))
            if wanted != dict(config.labels):
                # None: someone wrote meanwhile; the next poll looks again.
                if await self.cluster.update_config_labels(config, wanted) is not None:
                    changed += 1
                    log.info("%s version %s: alerts now %s", model, version,
                             wanted.get(L.STATUS_ALERTS) or "none")
        live = {c.id for c in configs}
        for gone in set(self._versions) - live:
            del self._versions[gone]
        return changed

    async def run(self) -> None:
        while True:
            try:
                await self.sync_once()
                outcome = "ok"
                if self._failing:
                    log.info("reading alerts from %s again", self.url)
                self._failing = False
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                outcome = "error"
                if not self._failing:  # once per outage, not once per poll
                    log.warning("cannot read alerts from %s: %s", self.url, exc)
                self._failing = True
            if self.metrics is not None:
                self.metrics.alert_polls.labels(outcome).inc()
            await asyncio.sleep(self.interval)
