"""Plain records of the Docker objects the operator reads. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class ConfigObject:
    id: str
    name: str
    index: int  # Swarm object version, for optimistic concurrency
    created_at: str
    labels: Mapping[str, str]
    data: bytes


@dataclass(frozen=True, slots=True)
class ServiceObject:
    id: str
    name: str
    index: int
    labels: Mapping[str, str]
    spec: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class TaskSummary:
    desired: int
    running: int
    failed: int
    last_error: str
    # Seconds since the longest-running task started running (0: none runs).
    running_for: float = 0.0
    # Tasks whose container has started and waits to be found healthy: they
    # run (or fail) within seconds. Tasks still pulling their image are not.
    starting: int = 0


@dataclass(frozen=True, slots=True)
class TaskState:
    """One task of a service, as a batch job's outcome is read from it."""

    state: str  # the engine's: new, pending, ..., running, complete, failed, rejected
    exit_code: int | None  # its container's, once it ended
    message: str  # the engine's error or status message
