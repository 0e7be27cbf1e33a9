"""Operator metrics, model state gauges, and alerts mirrored as config labels."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiart.control.alert_watch import AlertWatch
from aiart.control.deps import Deps
from aiart.control.loop import Operator
from aiart.control.metrics import ModelStates, OperatorMetrics, VersionState, version_state
from aiart.control.reconcile import Outcome, reconcile_model
from aiart.core import labels as L
from aiart.core.alerts import alerts_for, firing_alerts, with_alerts
from aiart.core.errors import TransientError
from aiart.core.settings import OperatorSettings
from aiart.core.spec import parse_manifest
from aiart.core.status import Phase, Status, status_labels
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes import FakeBuilder, FakeCluster, FakeGateway, manifest_yaml, tiny_model


def samples(registry: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_version_state_reads_status_replicas_and_objective() -> None:
    manifest = parse_manifest(manifest_yaml("m", "1", "a", objectives="{latencyP99Ms: 250}"))
    state = version_state({L.STATUS: "Ready", L.STATUS_REPLICAS: "1/2"}, manifest)
    assert state == VersionState(phase="Ready", running=1, desired=2,
                                 latency_objective_seconds=0.25)
    assert version_state({}, None) == VersionState(phase="Pending")
    assert version_state({L.STATUS: "Bogus", L.STATUS_REPLICAS: "x/2"}, None).running is None


def test_model_states_are_a_state_set_and_end_with_the_model() -> None:
    metrics = OperatorMetrics()
    metrics.models.set_model("m", {"1": VersionState(phase="Ready", running=2, desired=2),
                                   "2": VersionState(phase="Failed")})
    got = samples(metrics.registry)
    status = {k: v for k, v in got.items() if k[0] == "aiart_model_status"}
    assert len(status) == 2 * len(Phase)  # every phase, 0 or 1, for both versions
    assert got["aiart_model_status", (("model", "m"), ("status", "Ready"), ("version", "1"))] == 1
    assert got["aiart_model_status", (("model", "m"), ("status", "Failed"), ("version", "1"))] == 0
    assert got["aiart_model_status", (("model", "m"), ("status", "Failed"), ("version", "2"))] == 1
    assert got["aiart_model_replicas_desired", (("model", "m"), ("version", "1"))] == 2
    assert ("aiart_model_replicas_running", (("model", "m"), ("version", "2"))) not in got
    metrics.models.set_model("m", {})
    assert not any(k[0].startswith("aiart_model_") for k in samples(metrics.registry))


async def test_a_pass_publishes_each_versions_state() -> None:
    cluster = FakeCluster()
    states = ModelStates()
    deps = Deps(cluster=cluster, builder=FakeBuilder(), gateway=FakeGateway(cluster),
                settings=OperatorSettings(), models=states)
    cluster.add_config("m-art", tiny_model())
    cluster.add_config("m-1", manifest_yaml("m", "1", "m-art", objectives="{latencyP99Ms: 50}"),
                       {L.MODEL: "m"})
    cluster.add_config("m-bad", b"not: a manifest", {L.MODEL: "m"})
    for _ in range(6):
        await reconcile_model(deps, "m")
    got = states.snapshot()["m"]
    assert got["1"] == VersionState(phase="Ready", running=1, desired=1,
                                    latency_objective_seconds=0.05)
    assert got["m-bad"].phase == "Invalid"  # an invalid config goes by its name
    for config_id in list(cluster.configs):
        if cluster.configs[config_id].labels.get(L.MODEL):
            del cluster.configs[config_id]
    await reconcile_model(deps, "m")
    assert "m" not in states.snapshot()


async def test_the_loop_counts_passes_by_outcome_and_shows_its_queue() -> None:
    outcomes: list[Any] = [Outcome(requeue_after=None), Outcome(None, transient="store away"),
                           TransientError("engine away"), RuntimeError("bug")]

    async def reconcile(_: Deps, key: str) -> Outcome:
        result = outcomes.pop(0)
        if isinstance(result, Exception):
            raise result
        return result  # type: ignore[no-any-return]

    cluster = FakeCluster()
    metrics = OperatorMetrics()
    op = Operator(Deps(cluster=cluster, builder=FakeBuilder(), gateway=FakeGateway(cluster),
                       settings=OperatorSettings()), reconcile=reconcile, metrics=metrics)
    for _ in range(4):
        await op.work_one("m")
    got = samples(metrics.registry)
    assert got["aiart_operator_reconciles_total", (("outcome", "ok"),)] == 1
    assert got["aiart_operator_reconciles_total", (("outcome", "retry"),)] == 2
    assert got["aiart_operator_reconciles_total", (("outcome", "error"),)] == 1
    assert got["aiart_operator_reconcile_duration_seconds_count", ()] == 4
    assert got["aiart_operator_queue_depth", ()] == len(op.queue) == 1


ALERTS = [
    {"labels": {"alertname": "AiartModelErrorRatio", "model": "m", "version": "1"},
     "status": {"state": "active"}},
    {"labels": {"alertname": "AiartModelReplicasMissing", "model": "m"},
     "status": {"state": "active"}},
    {"labels": {"alertname": "AiartModelLatency", "model": "m", "version": "2"},
     "status": {"state": "suppressed"}},
    {"labels": {"alertname": "AiartOperatorDown"}, "status": {"state": "active"}},
    {"labels": {"model": "m"}},  # no name: ignored
]


def test_alerts_map_to_versions_and_models() -> None:
    firing = firing_alerts(ALERTS)
    assert alerts_for(firing, "m", "1") == "AiartModelErrorRatio,AiartModelReplicasMissing"
    assert alerts_for(firing, "m", "2") == "AiartModelReplicasMissing"  # suppressed: not shown
    assert alerts_for(firing, "other", "1") == ""
    assert with_alerts({"a": "b", L.STATUS_ALERTS: "X"}, "") == {"a": "b"}
    assert with_alerts({"a": "b"}, "Y") == {"a": "b", L.STATUS_ALERTS: "Y"}


def test_a_status_change_keeps_the_alerts_and_cannot_forge_them() -> None:
    current = {L.MODEL: "m", L.STATUS: "Ready", L.STATUS_ALERTS: "AiartModelErrorRatio",
               "aiart.status.replicas": "1/1"}
    new = status_labels(current, Status(phase=Phase.DEPLOYING, message="rolling",
                                        extra={"alerts": "Forged"}))
    assert new[L.STATUS_ALERTS] == "AiartModelErrorRatio"
    assert new[L.STATUS] == "Deploying" and "aiart.status.replicas" not in new


class FakeAlertmanager(AlertWatch):
    def __init__(self, cluster: FakeCluster, answers: list[Any]) -> None:
        super().__init__(cluster, None, "http://am:9093", interval=0.01)  # type: ignore[arg-type]
        self.answers = answers

    async def read_alerts(self) -> list[dict[str, Any]]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[no-any-return]


async def test_the_watch_writes_and_clears_alert_labels() -> None:
    cluster = FakeCluster()
    one = cluster.add_config("m-1", manifest_yaml("m", "1", "a"), {L.MODEL: "m", L.STATUS: "Ready"})
    two = cluster.add_config("m-2", manifest_yaml("m", "2", "a"), {L.MODEL: "m"})
    bad = cluster.add_config("m-bad", b"{", {L.MODEL: "m"})
    watch = FakeAlertmanager(cluster, [ALERTS, ALERTS, []])
    assert await watch.sync_once() == 2
    assert cluster.configs[one].labels[L.STATUS_ALERTS] == (
        "AiartModelErrorRatio,AiartModelReplicasMissing")
    assert cluster.configs[one].labels[L.STATUS] == "Ready"  # the status keeps its meaning
    assert cluster.configs[two].labels[L.STATUS_ALERTS] == "AiartModelReplicasMissing"
    assert L.STATUS_ALERTS not in cluster.configs[bad].labels
    assert await watch.sync_once() == 0  # nothing changed: nothing written
    assert await watch.sync_once() == 2
    assert all(L.STATUS_ALERTS not in c.labels for c in cluster.configs.values())


async def test_an_unreachable_alertmanager_changes_no_label() -> None:
    cluster = FakeCluster()
    one = cluster.add_config("m-1", manifest_yaml("m", "1", "a"),
                             {L.MODEL: "m", L.STATUS_ALERTS: "AiartModelErrorRatio"})
    watch = FakeAlertmanager(cluster, [OSError("refused")])
    metrics = OperatorMetrics()
    watch.metrics = metrics
    task = asyncio.create_task(watch.run())
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, IndexError):
        await task
    assert cluster.configs[one].labels[L.STATUS_ALERTS] == "AiartModelErrorRatio"
    assert samples(metrics.registry)["aiart_operator_alert_polls_total", (("outcome", "error"),)] >= 1
