"""What a reconcile pass works with: the ports it drives, the settings, and
what this process remembers between passes."""

from __future__ import annotations

from dataclasses import dataclass, field

from opentelemetry.context import Context

from aiart.catalog.records import Catalog
from aiart.control.metrics import ModelStates
from aiart.control.ports import Builder, Cluster, GateReader, GatewayProbe
from aiart.core.settings import OperatorSettings
from aiart.store.client import Store


@dataclass(frozen=True, slots=True)
class Deps:
    cluster: Cluster
    builder: Builder
    gateway: GatewayProbe
    settings: OperatorSettings
    store: Store | None = None
    catalog: Catalog | None = None
    # What this process has already written to the store and the catalog, so
    # that periodic passes do not repeat it; lost on restart, and then
    # redone once (both writes are idempotent).
    written: dict[str, str] = field(default_factory=dict)
    # Status events the catalog could not take yet, by deployment key.
    unrecorded: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    # Each model's state for Prometheus, as its labels were at the last pass.
    models: ModelStates | None = None
    # The trace of each version's change in progress, by config id.
    traces: dict[str, Context] = field(default_factory=dict)
    # The store gateway's key, which models' own store keys derive from
    # (None: no model gets the store).
    store_gateway_key: bytes | None = None
    # The key of the operator's probe tokens and of model servers' gateway
    # tokens (auth/access.py); None: neither (closed models cannot be
    # probed, model servers answer anyone on the model network).
    probe_key: bytes | None = None
    # Where canary rollouts read their gates (None: no Prometheus; they hold).
    gate: GateReader | None = None
