"""Rollouts in the reconcile loop against in-memory fakes: a canary begins
when its version answers, steps up as its gate passes, is promoted or rolled
back; a restarted operator goes on at the same step; the gateway's routes
follow the labels alone."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiart.control.deps import Deps
from aiart.control.reconcile import reconcile_model
from aiart.control.traffic_feed import splits_of
from aiart.core import labels as L
from aiart.core.render import carries_current_route
from aiart.core.rollout import COMMAND, PHASE, SINCE, STEP, Figures
from aiart.core.settings import OperatorSettings

from tests.fakes import FakeBuilder, FakeCluster, FakeGateway
from tests.unit.control.test_reconcile import declare, settle

CANARY = "{strategy: canary, steps: [20, 60, 100], interval: 30s, gate: {maxP99Ms: 100}}"
GOOD = Figures(requests=50, errors=0, p99_ms=5.0)


class FakeGate:
    def __init__(self) -> None:
        self.answer: Figures | str = GOOD
        self.asked: list[tuple[str, str]] = []

    async def figures(self, model: str, version: str, seconds: float) -> Figures | str:
        self.asked.append((model, version))
        return self.answer


@pytest.fixture
def world() -> tuple[Deps, FakeCluster, FakeGate]:
    cluster = FakeCluster()
    gate = FakeGate()
    deps = Deps(cluster=cluster, builder=FakeBuilder(), gateway=FakeGateway(cluster),
                settings=OperatorSettings(public_url="http://gw:8080"), gate=gate)
    return deps, cluster, gate


def split(cluster: FakeCluster, deps: Deps) -> tuple[str, int] | None:
    found = splits_of([c for c in cluster.configs.values() if L.MODEL in c.labels],
                      list(cluster.services.values()), deps.settings, lambda m, v: f"{m}/{v}")
    return (found[0].mode, found[0].percent) if found else None


def step_ends(cluster: FakeCluster, config: str) -> None:
    """The current step's interval has passed (its start moved back)."""
    live = cluster.config(config)
    labels = {**live.labels, SINCE: f"{float(live.labels[SINCE]) - 31:.3f}"}
    cluster.configs[live.id] = replace(live, labels=labels, index=live.index + 1)


async def serving_1_rolling_out_2(deps: Deps, cluster: FakeCluster,
                                  rollout: str = CANARY) -> None:
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    declare(cluster, "iris", "2", rollout=rollout)
    await settle(deps, "iris")


def role(cluster: FakeCluster, version: str) -> str | None:
    (service,) = (s for s in cluster.services.values() if s.labels.get(L.VERSION) == version)
    return service.labels.get(L.ROLLOUT_ROLE)


def current(cluster: FakeCluster, config: str) -> bool:
    return cluster.config(config).labels.get(L.STATUS_CURRENT) == "true"


async def test_a_canary_steps_up_and_is_promoted(world) -> None:
    deps, cluster, gate = world
    await serving_1_rolling_out_2(deps, cluster)
    assert cluster.status("iris-2") == "Ready" and not current(cluster, "iris-2")
    assert current(cluster, "iris-1")
    assert "step 1 of 3, 20% of traffic" in cluster.config("iris-2").labels[L.STATUS_ROLLOUT]
    assert split(cluster, deps) == ("weighted", 20) and gate.asked == []
    for weight in (60, 100):
        step_ends(cluster, "iris-2")
        await settle(deps, "iris")
        assert split(cluster, deps) == ("weighted", weight)
        # The status says the weights and the gate's last figures.
        assert (f"{weight}% of traffic to it, {100 - weight}% to version 1; last gate: "
                "50 requests, error rate 0.0000, p99 5.0 ms") in cluster.config(
            "iris-2").labels[L.STATUS_ROLLOUT]
    step_ends(cluster, "iris-2")
    for _ in range(12):
        await reconcile_model(deps, "iris")
        # Through the hand-over, the split at 100 % stays until the old version
        # has given up its routes: no moment where the old one serves again.
        routed = {s.labels[L.VERSION] for s in cluster.services.values()
                  if carries_current_route(dict(s.labels))}
        assert split(cluster, deps) == ("weighted", 100) or routed == {"2"}, routed
    assert current(cluster, "iris-2") and not current(cluster, "iris-1")
    assert "promoted after 3 steps" in cluster.config("iris-2").labels[L.STATUS_ROLLOUT]
    assert split(cluster, deps) is None  # its own routes serve: the split is gone
    assert gate.asked == [("iris", "2")] * 3


async def test_a_failed_gate_rolls_back_and_fails_the_version(world) -> None:
    deps, cluster, gate = world
    await serving_1_rolling_out_2(deps, cluster)
    gate.answer = Figures(requests=50, errors=0, p99_ms=250.0)
    step_ends(cluster, "iris-2")
    await settle(deps, "iris")
    labels = cluster.config("iris-2").labels
    assert labels[L.STATUS] == "Failed" and "rolled back" in labels[L.STATUS_MESSAGE]
    assert "p99 250.0 ms > 100 ms" in labels[L.STATUS_MESSAGE]
    assert labels[L.STATUS_ENDPOINT].endswith("/models/iris/versions/2")
    assert current(cluster, "iris-1") and split(cluster, deps) is None
    # Later passes leave it so.
    await settle(deps, "iris")
    assert cluster.status("iris-2") == "Failed" and current(cluster, "iris-1")


async def test_prometheus_away_holds_the_step(world) -> None:
    deps, cluster, gate = world
    await serving_1_rolling_out_2(deps, cluster)
    gate.answer = "ClientConnectorError: prometheus:9090"
    step_ends(cluster, "iris-2")
    await settle(deps, "iris", passes=3)
    assert split(cluster, deps) == ("weighted", 20)
    assert "cannot read the gate" in cluster.config("iris-2").labels[L.STATUS_ROLLOUT]


async def test_a_restarted_operator_goes_on_at_the_same_step(world) -> None:
    deps, cluster, gate = world
    await serving_1_rolling_out_2(deps, cluster)
    step_ends(cluster, "iris-2")
    await settle(deps, "iris")
    since = cluster.config("iris-2").labels[SINCE]
    # A new process: nothing remembered but what the engine holds.
    fresh = Deps(cluster=cluster, builder=FakeBuilder(), gateway=FakeGateway(cluster),
                 settings=deps.settings, gate=gate)
    await settle(fresh, "iris")
    labels = cluster.config("iris-2").labels
    assert labels[STEP] == "1" and labels[SINCE] == since  # neither restarted nor skipped
    assert split(cluster, fresh) == ("weighted", 60)


async def test_commands_promote_or_abort_by_hand(world) -> None:
    deps, cluster, _ = world
    await serving_1_rolling_out_2(deps, cluster, "{strategy: shadow, percent: 30}")
    assert split(cluster, deps) == ("mirror", 30) and current(cluster, "iris-1")
    # Its service says so, for its metrics (Prometheus' ``rollout`` label).
    assert role(cluster, "2") == "shadow" and role(cluster, "1") is None
    live = cluster.config("iris-2")
    cluster.configs[live.id] = replace(live, labels={**live.labels, COMMAND: "promote"},
                                       index=live.index + 1)
    await settle(deps, "iris", passes=12)
    assert current(cluster, "iris-2") and COMMAND not in cluster.config("iris-2").labels
    assert role(cluster, "2") is None
    declare(cluster, "iris", "3", rollout=CANARY)
    await settle(deps, "iris")
    live = cluster.config("iris-3")
    cluster.configs[live.id] = replace(live, labels={**live.labels, COMMAND: "abort"},
                                       index=live.index + 1)
    await settle(deps, "iris")
    assert cluster.status("iris-3") == "Failed" and "aborted by hand" in cluster.config(
        "iris-3").labels[L.STATUS_MESSAGE]
    assert current(cluster, "iris-2") and split(cluster, deps) is None


async def test_a_first_version_with_a_rollout_is_served_at_once(world) -> None:
    deps, cluster, _ = world
    declare(cluster, "iris", "1", rollout=CANARY)
    await settle(deps, "iris")
    assert current(cluster, "iris-1") and split(cluster, deps) is None
    assert "nothing to roll out from" in cluster.config("iris-1").labels[L.STATUS_ROLLOUT]


async def test_the_pass_that_begins_a_rollout_says_so_in_the_status(world) -> None:
    # The version answers before its status says Ready: the same pass begins
    # its rollout, gives its service the canary's role, and writes the step
    # (a busy operator's next pass may come many seconds later; it once
    # wrote "service created" there, and the step only a pass after).
    deps, cluster, _ = world
    declare(cluster, "iris", "1")
    await settle(deps, "iris")
    declare(cluster, "iris", "2", rollout=CANARY)
    for _ in range(6):
        await reconcile_model(deps, "iris")
        if cluster.config("iris-2").labels.get(PHASE):
            break
    labels = cluster.config("iris-2").labels
    assert labels[PHASE] == "Progressing", labels
    assert "step 1 of 3" in labels.get(L.STATUS_ROLLOUT, ""), labels
    assert labels[L.STATUS] == "Ready", labels
    assert role(cluster, "2") == "canary"
