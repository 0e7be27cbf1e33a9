"""Alertmanager's active alerts, as the ``aiart.status.alerts`` label of each
model version's config. Pure: no I/O (``control/alert_watch`` does the reading and
writing).

An alert names its model with a ``model`` label and, when it concerns one
version only, a ``version`` label; an alert without a version concerns every
version of its model. Alerts without a ``model`` label (the operator down)
concern no config.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from aiart.core import labels as L

Firing = dict[tuple[str, str | None], set[str]]


def firing_alerts(alerts: Iterable[Mapping[str, Any]]) -> Firing:
    """Active alerts by (model, version or None), from Alertmanager's
    ``GET /api/v2/alerts`` answer."""
    out: Firing = {}
    for alert in alerts:
        state = (alert.get("status") or {}).get("state", "active")
        labels = alert.get("labels") or {}
        model, name = labels.get("model"), labels.get("alertname")
        if state != "active" or not isinstance(model, str) or not isinstance(name, str):
            continue
        version = labels.get("version")
        out.setdefault((model, version if isinstance(version, str) else None), set()).add(name)
    return out


def alerts_for(firing: Firing, model: str, version: str) -> str:
    """The label value for one version: its alerts' names, sorted, comma-separated."""
    names = firing.get((model, version), set()) | firing.get((model, None), set())
    return ",".join(sorted(names))


def with_alerts(config_labels: Mapping[str, str], value: str) -> dict[str, str]:
    """The config's labels with ``aiart.status.alerts`` set to ``value`` (gone when empty)."""
    out = {k: v for k, v in config_labels.items() if k != L.STATUS_ALERTS}
    if value:
        out[L.STATUS_ALERTS] = value
    return out
