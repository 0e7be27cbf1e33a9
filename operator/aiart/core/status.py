"""Model status as labels on the model's config. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from aiart.core import labels as L

MAX_MESSAGE = 1000
# Written by the alert watcher and the autoscaler, not by a reconcile pass: a
# status change keeps them, whatever the new status carries.
KEPT = frozenset({L.STATUS_ALERTS, L.STATUS_SCALE})


class Phase(StrEnum):
    PENDING = "Pending"
    BUILDING = "Building"
    DEPLOYING = "Deploying"
    READY = "Ready"
    FAILED = "Failed"
    INVALID = "Invalid"


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    phase: Phase
    message: str
    image: str = ""
    endpoint: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


def _clean(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def status_labels(current: Mapping[str, str], status: Status) -> dict[str, str]:
    """The config's labels with every ``aiart.status*`` label replaced by ``status``."""
    out = {k: v for k, v in current.items()
           if k in KEPT or (k != L.STATUS and not k.startswith(L.STATUS_PREFIX))}
    out[L.STATUS] = status.phase.value
    out[L.STATUS_MESSAGE] = _clean(status.message)
    if status.image:
        out[L.STATUS_IMAGE] = status.image
    if status.endpoint:
        out[L.STATUS_ENDPOINT] = status.endpoint
    for key, value in status.extra.items():
        if f"{L.STATUS_PREFIX}{key}" not in KEPT:
            out[f"{L.STATUS_PREFIX}{key}"] = value
    return out


def read_status(config_labels: Mapping[str, str]) -> tuple[Phase | None, str]:
    raw = config_labels.get(L.STATUS)
    try:
        phase = Phase(raw) if raw else None
    except ValueError:
        phase = None
    return phase, config_labels.get(L.STATUS_INPUTS, "")


def status_from_labels(config_labels: Mapping[str, str]) -> Status:
    """The status a config's labels hold now (Pending when it has none)."""
    phase, _ = read_status(config_labels)
    named = {L.STATUS_MESSAGE, L.STATUS_IMAGE, L.STATUS_ENDPOINT, *KEPT}
    extra = {k.removeprefix(L.STATUS_PREFIX): v for k, v in config_labels.items()
             if k.startswith(L.STATUS_PREFIX) and k not in named}
    return Status(phase=phase or Phase.PENDING,
                  message=config_labels.get(L.STATUS_MESSAGE, ""),
                  image=config_labels.get(L.STATUS_IMAGE, ""),
                  endpoint=config_labels.get(L.STATUS_ENDPOINT, ""), extra=extra)
