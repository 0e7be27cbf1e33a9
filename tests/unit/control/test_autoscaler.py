"""The autoscaler against in-memory fakes: decisions go to the config's
labels, the reconcile pass sizes the service from them, an idle version goes
to zero and stays Ready, a wake needs the gateway's token, and a restarted
autoscaler neither forgets nor repeats a decision. The gateway's wake routes
follow from Docker state alone."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from aiart.control.autoscaler import Autoscaler
from aiart.control.deps import Deps
from aiart.control.traffic_feed import wakers_of
from aiart.core import labels as L
from aiart.core.scaling import WAKE_HOLD_SECONDS, Load
from aiart.core.settings import OperatorSettings
from aiart.core.spec import Scaling
from aiart.core.traffic import (
    ACTIVATE_HEADER,
    ACTIVATOR,
    ACTIVATOR_GRPC,
    ASLEEP_PRIORITY,
    ASLEEP_VERSIONED_PRIORITY,
    WAKE_PRIORITY,
    WAKE_VERSIONED_PRIORITY,
    Waker,
    dynamic_config,
)

from tests.fakes import FakeBuilder, FakeCluster, FakeGateway
from tests.unit.control.test_reconcile import declare, settle

SCALING = ("{minReplicas: 0, maxReplicas: 4, target: 2, stableWindow: 20s, panicWindow: 4s, "
           "scaleToZeroAfter: 10s, activationTimeout: 7s}")


class FakeLoads:
    def __init__(self) -> None:
        self.answer: Load | str = Load(0, 0, 0)

    async def load(self, model: str, version: str, scaling: Scaling) -> Load | str:
        return self.answer


def token_of(model: str, version: str) -> str:
    return f"token-{model}-{version}"


@pytest.fixture
def world() -> tuple[Deps, FakeCluster, FakeLoads, Autoscaler, list[str]]:
    cluster = FakeCluster()
    deps = Deps(cluster=cluster, builder=FakeBuilder(), gateway=FakeGateway(cluster),
                settings=OperatorSettings(public_url="http://gw:8080"))
    loads = FakeLoads()
    kicked: list[str] = []
    scaler = Autoscaler(cluster, loads, kick=kicked.append, token_of=token_of)
    return deps, cluster, loads, scaler, kicked


def replicas(cluster: FakeCluster, version: str = "1") -> int:
    (service,) = (s for s in cluster.services.values() if s.labels.get(L.VERSION) == version)
    return int(service.spec["Mode"]["Replicated"]["Replicas"])


def lead_over(cluster: FakeCluster, config: str) -> None:
    """The version's requests have gone to the activator long enough."""
    live = cluster.config(config)
    labels = {**live.labels,
              L.SCALE_SLEEP_AT: f"{float(live.labels[L.SCALE_SLEEP_AT]) - 60:.3f}"}
    cluster.configs[live.id] = replace(live, labels=labels, index=live.index + 1)


def wakers(deps: Deps, cluster: FakeCluster) -> dict[str, Waker]:
    configs = [c for c in cluster.configs.values() if L.MODEL in c.labels]
    return {f"{w.model}-{w.version}": w
            for w in wakers_of(configs, list(cluster.services.values()), deps.settings,
                               token_of)}


def age(cluster: FakeCluster, config: str, seconds: float) -> None:
    """The last change of the version's size was ``seconds`` earlier."""
    live = cluster.config(config)
    labels = {**live.labels,
              L.SCALE_CHANGED: f"{float(live.labels[L.SCALE_CHANGED]) - seconds:.3f}"}
    cluster.configs[live.id] = replace(live, labels=labels, index=live.index + 1)


async def test_load_sizes_the_service_and_idle_puts_it_to_sleep(world) -> None:
    deps, cluster, loads, scaler, kicked = world
    declare(cluster, "iris", "1", scaling=SCALING)
    await settle(deps, "iris")
    assert replicas(cluster) == 1 and cluster.status("iris-1") == "Ready"
    # A burst: 7 in flight over the panic window, twice what 1 replica holds.
    loads.answer = Load(stable=1, panic=7, recent=40)
    await scaler.tick()
    labels = cluster.config("iris-1").labels
    assert labels[L.SCALE_REPLICAS] == "4" and labels[L.STATUS_SCALE].startswith("burst")
    assert kicked == ["iris"]
    await settle(deps, "iris")
    assert replicas(cluster) == 4
    assert cluster.config("iris-1").labels[L.STATUS_REPLICAS] == "4/4"
    # The status the pass writes keeps the autoscaler's reason.
    assert cluster.config("iris-1").labels[L.STATUS_SCALE].startswith("burst")
    # Quiet for longer than the stable window and the idle period.
    loads.answer = Load(0, 0, 0)
    for _ in range(3):
        age(cluster, "iris-1", 30)
        live = cluster.config("iris-1")
        cluster.configs[live.id] = replace(live, labels={
            **live.labels, L.SCALE_PANIC: f"{float(live.labels.get(L.SCALE_PANIC, 0)) - 30}"},
            index=live.index + 1)
        await scaler.tick()
        await settle(deps, "iris")
    # First its requests go to the activator (its wake routes outrank its
    # own), its task still up; not yet to zero, however often it is asked.
    config = cluster.config("iris-1")
    assert config.labels[L.SCALE_REPLICAS] == "1" and L.SCALE_SLEEP_AT in config.labels
    assert config.labels[L.STATUS_SCALE].startswith(
        "no request for 10s: its requests go to the activator")
    assert wakers(deps, cluster)["iris-1"].priorities == (ASLEEP_PRIORITY,
                                                          ASLEEP_VERSIONED_PRIORITY)
    routes = dynamic_config([], entrypoints=["web"], wakers=list(wakers(deps, cluster).values()),
                            activator_url="http://activator:8090")["http"]["routers"]
    assert {r["priority"] for r in routes.values()} == {ASLEEP_PRIORITY,
                                                        ASLEEP_VERSIONED_PRIORITY}
    await scaler.tick()
    assert cluster.config("iris-1").labels[L.SCALE_REPLICAS] == "1" and replicas(cluster) == 1
    lead_over(cluster, "iris-1")
    await scaler.tick()
    await settle(deps, "iris")
    assert cluster.config("iris-1").labels[L.SCALE_REPLICAS] == "0"
    assert L.SCALE_SLEEP_AT not in cluster.config("iris-1").labels
    assert replicas(cluster) == 0
    assert wakers(deps, cluster)["iris-1"].asleep  # asleep: still to the activator
    config = cluster.config("iris-1")
    assert config.labels[L.STATUS] == "Ready"
    assert config.labels[L.STATUS_MESSAGE].startswith("asleep at zero replicas")
    assert config.labels[L.STATUS_SCALE].startswith("no request for 10s: scaled to zero")


async def test_a_wake_needs_the_gateways_token_and_comes_once(world) -> None:
    deps, cluster, loads, scaler, kicked = world
    declare(cluster, "iris", "1", scaling=SCALING)
    await settle(deps, "iris")
    await scaler.tick()
    age(cluster, "iris-1", 11)
    await scaler.tick()
    lead_over(cluster, "iris-1")
    await scaler.tick()
    await settle(deps, "iris")
    assert replicas(cluster) == 0
    refused = await scaler.wake("iris", "1", "token-wine-1")
    assert refused.status == 403 and replicas(cluster) == 0
    assert (await scaler.wake("iris", "9", "token-iris-9")).status == 404
    woken = await scaler.wake("iris", "1", "token-iris-1")
    assert (woken.status, woken.replicas) == (202, 1)
    assert cluster.config("iris-1").labels[L.STATUS_SCALE] == "woken by a request: starting 1 replica"
    index = cluster.config("iris-1").index
    again = await scaler.wake("iris", "1", "token-iris-1")
    assert again.status == 202 and cluster.config("iris-1").index == index  # nothing written
    await settle(deps, "iris")
    assert replicas(cluster) == 1 and cluster.status("iris-1") == "Ready"
    # Just woken: its requests still go to the activator, until the gateway has
    # surely read the swarm since its last task stopped; then its own routes
    # outrank its wake routes again.
    assert wakers(deps, cluster)["iris-1"].asleep
    later = time.time() + WAKE_HOLD_SECONDS + 1
    configs = [c for c in cluster.configs.values() if L.MODEL in c.labels]
    (awake,) = wakers_of(configs, list(cluster.services.values()), deps.settings, token_of,
                         now=later)
    assert awake.priorities == (WAKE_PRIORITY, WAKE_VERSIONED_PRIORITY)
    # Once the service has its task, a wake call names where it is.
    assert (await scaler.wake("iris", "1", "token-iris-1")).addresses == ("10.0.9.2",)
    # Slow to start, its held requests not in the figures yet: the activator
    # asking again keeps it awake past the idle period.
    age(cluster, "iris-1", 11)
    await scaler.wake("iris", "1", "token-iris-1")
    await scaler.tick()
    assert cluster.config("iris-1").labels[L.SCALE_REPLICAS] == "1"
    # A restarted operator's autoscaler reads the same decision back and goes
    # on from it: idle for the idle period since the wake, to zero; not before.
    restarted = Autoscaler(cluster, loads, kick=kicked.append, token_of=token_of)
    live = cluster.config("iris-1")
    cluster.configs[live.id] = replace(live, labels={
        **live.labels, L.SCALE_CHANGED: f"{time.time() - 3:.3f}"}, index=live.index + 1)
    await restarted.tick()
    assert cluster.config("iris-1").labels[L.SCALE_REPLICAS] == "1"
    age(cluster, "iris-1", 8)
    await restarted.tick()
    lead_over(cluster, "iris-1")
    await restarted.tick()
    assert cluster.config("iris-1").labels[L.SCALE_REPLICAS] == "0"


async def test_a_request_as_it_goes_to_sleep_keeps_it_awake(world) -> None:
    deps, cluster, _, scaler, kicked = world
    declare(cluster, "iris", "1", scaling=SCALING)
    await settle(deps, "iris")
    await scaler.tick()
    age(cluster, "iris-1", 11)
    await scaler.tick()
    assert wakers(deps, cluster)["iris-1"].asleep and replicas(cluster) == 1
    # The activator passes a request on to its task, and says so.
    answer = await scaler.wake("iris", "1", "token-iris-1")
    assert (answer.status, answer.replicas) == (202, 1)
    labels = cluster.config("iris-1").labels
    assert L.SCALE_SLEEP_AT not in labels and labels[L.SCALE_REPLICAS] == "1"
    assert labels[L.STATUS_SCALE] == "1 replica kept: a request came as it was going to sleep"
    assert not wakers(deps, cluster)["iris-1"].asleep
    # And it is not put to sleep under the requests the activator passed.
    await scaler.tick()
    await scaler.tick()
    assert L.SCALE_SLEEP_AT not in cluster.config("iris-1").labels
    assert kicked == []  # its size never changed


async def test_unreadable_load_changes_nothing_and_a_fixed_model_is_left_alone(world) -> None:
    deps, cluster, loads, scaler, _ = world
    declare(cluster, "iris", "1", scaling=SCALING)
    declare(cluster, "wine", "1", replicas="2")
    await settle(deps, "iris")
    await settle(deps, "wine")
    await scaler.tick()
    loads.answer = "Prometheus answered 503"
    age(cluster, "iris-1", 60)
    await scaler.tick()
    assert cluster.config("iris-1").labels[L.SCALE_REPLICAS] == "1"
    assert "the load cannot be read (Prometheus answered 503)" in (
        cluster.config("iris-1").labels[L.STATUS_SCALE])
    assert L.SCALE_REPLICAS not in cluster.config("wine-1").labels


async def test_the_wake_routes_come_from_docker_state(world) -> None:
    deps, cluster, _, _, _ = world
    declare(cluster, "iris", "1", scaling=SCALING)
    declare(cluster, "wine", "1")
    await settle(deps, "iris")
    await settle(deps, "wine")
    configs = [c for c in cluster.configs.values() if L.MODEL in c.labels]
    wakers = wakers_of(configs, list(cluster.services.values()), deps.settings, token_of)
    assert [(w.model, w.version, w.current, w.hold_seconds) for w in wakers] == [
        ("iris", "1", True, 7)]
    config = dynamic_config([], entrypoints=["web"], wakers=wakers,
                            activator_url="http://activator:8090")["http"]
    assert config["services"][ACTIVATOR] == {
        "loadBalancer": {"servers": [{"url": "http://activator:8090"}]}}
    routers = {n: r for n, r in config["routers"].items() if "_grpc" not in n}
    assert {r["rule"].split("`")[1] for r in routers.values()} == {
        "/v2/models/iris/versions/1", "/models/iris/versions/1", "/v2/models/iris",
        "/models/iris"}
    # gRPC calls by their metadata, to the activator's gRPC port (h2c).
    grpc = [r for n, r in config["routers"].items() if "_grpc" in n]
    assert sorted(r["rule"].count("Header(`aiart-") for r in grpc) == [1, 2]
    assert {r["service"] for r in grpc} == {ACTIVATOR_GRPC}
    assert config["services"][ACTIVATOR_GRPC]["loadBalancer"]["servers"][0]["url"].startswith(
        "h2c://")
    for router in config["routers"].values():
        assert "!HeaderRegexp(`X-Aiart-No-Wake`, `.+`)" in router["rule"]
    for router in routers.values():
        assert router["service"] == ACTIVATOR
        assert "!HeaderRegexp(`X-Aiart-Probe`, `.+`)" in router["rule"]
        # The guard comes first (the default: an API key, checked in the gateway),
        # then the rewrite.
        first, headers = (config["middlewares"][m] for m in router["middlewares"][:2])
        assert first == {"plugin": {"aiartkeys": {"model": "iris", "feed": "http://auth:8000/keys"}}}
        rewrite = headers["headers"]["customRequestHeaders"]
        assert rewrite[ACTIVATE_HEADER] == "iris/1/7"
        assert rewrite["X-Aiart-Gateway"] == "token-iris-1"
        assert rewrite["Authorization"] == "" and rewrite["X-Aiart-Probe"] == ""


async def test_neither_version_of_a_rollout_under_way_goes_to_sleep(world) -> None:
    from aiart.core.rollout import begin
    from aiart.core.rollout import state_labels as rollout_labels
    from aiart.core.spec import Rollout

    deps, cluster, _, scaler, _ = world
    declare(cluster, "iris", "1", scaling=SCALING)
    await settle(deps, "iris")
    declare(cluster, "iris", "2", scaling=SCALING)
    await scaler.tick()
    # Version 2 rolls out from version 1 (as drive_rollouts records it).
    live = cluster.config("iris-2")
    state = begin(Rollout(strategy="canary"), "1", time.time())
    cluster.configs[live.id] = replace(live, labels=rollout_labels(live.labels, state),
                                       index=live.index + 1)
    await settle(deps, "iris")
    await scaler.tick()
    for config in ("iris-1", "iris-2"):
        age(cluster, config, 60)
    await scaler.tick()
    assert cluster.config("iris-1").labels[L.SCALE_REPLICAS] == "1"
    assert cluster.config("iris-2").labels[L.SCALE_REPLICAS] == "1"
