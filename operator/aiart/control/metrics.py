"""The operator's Prometheus metrics: its own work, and each model's state.

Model state is what the model's config labels said on the operator's last
pass over it (status, replicas) plus its manifest's objectives; Prometheus'
alert rules (monitoring/alerts.yml) compare it with the runtimes' metrics.
No I/O here: the daemon serves ``registry`` over HTTP.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from aiart.core import labels as L
from aiart.core.spec import Manifest
from aiart.core.status import Phase

PHASES = tuple(p.value for p in Phase)


@dataclass(frozen=True, slots=True)
class VersionState:
    phase: str
    running: int | None = None
    desired: int | None = None
    latency_objective_seconds: float | None = None


def version_state(config_labels: Mapping[str, str], manifest: Manifest | None) -> VersionState:
    """A version's state from its config's labels and its manifest (None: invalid)."""
    phase = config_labels.get(L.STATUS) or Phase.PENDING.value
    if phase not in PHASES:
        phase = Phase.PENDING.value
    running = desired = None
    replicas = config_labels.get(L.STATUS_REPLICAS, "")
    have, _, want = replicas.partition("/")
    if have.isdigit() and want.isdigit():
        running, desired = int(have), int(want)
    objective = None
    if manifest is not None and manifest.spec.objectives.latencyP99Ms is not None:
        objective = manifest.spec.objectives.latencyP99Ms / 1000.0
    return VersionState(phase=phase, running=running, desired=desired,
                        latency_objective_seconds=objective)


class ModelStates(Collector):
    """Per-version gauges, replaced a whole model at a time so that a removed
    version's series end with it."""

    def __init__(self) -> None:
        self._models: dict[str, dict[str, VersionState]] = {}

    def set_model(self, model: str, versions: Mapping[str, VersionState]) -> None:
        if versions:
            self._models[model] = dict(versions)
        else:
            self._models.pop(model, None)

    def snapshot(self) -> dict[str, dict[str, VersionState]]:
        return {m: dict(v) for m, v in self._models.items()}

    def collect(self) -> Iterator[Metric]:
        labels = ["model", "version"]
        status = GaugeMetricFamily(
            "aiart_model_status", "1 for the status a model version has now, 0 for the others",
            labels=[*labels, "status"])
        running = GaugeMetricFamily(
            "aiart_model_replicas_running", "Running tasks of a model version", labels=labels)
        desired = GaugeMetricFamily(
            "aiart_model_replicas_desired", "Desired tasks of a model version", labels=labels)
        objective = GaugeMetricFamily(
            "aiart_model_latency_objective_seconds",
            "The manifest's spec.objectives.latencyP99Ms, in seconds", labels=labels)
        for model, versions in sorted(self._models.items()):
            for version, state in sorted(versions.items()):
                for phase in PHASES:
                    status.add_metric([model, version, phase], 1.0 if phase == state.phase else 0.0)
                if state.running is not None and state.desired is not None:
                    running.add_metric([model, version], state.running)
                    desired.add_metric([model, version], state.desired)
                if state.latency_objective_seconds is not None:
                    objective.add_metric([model, version], state.latency_objective_seconds)
        yield from (status, running, desired, objective)

    def describe(self) -> Iterator[Metric]:
        return iter(())  # computed at scrape time; nothing to check at registration


class OperatorMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.reconciles = Counter(
            "aiart_operator_reconciles", "Reconcile passes over one model, by outcome "
            "(ok, retry: a dependency is away, error: an unexpected failure)",
            ["outcome"], registry=self.registry)
        self.reconcile_seconds = Histogram(
            "aiart_operator_reconcile_duration_seconds", "Duration of one pass over one model",
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900))
        # The loop points it at its queue (Gauge.set_function).
        self.queue_depth = Gauge("aiart_operator_queue_depth", "Models waiting for a pass",
                                 registry=self.registry)
        self.alert_polls = Counter(
            "aiart_operator_alert_polls", "Reads of Alertmanager's active alerts, by outcome",
            ["outcome"], registry=self.registry)
        self.models = ModelStates()
        self.registry.register(self.models)
