"""The Docker adapter against the real engine: configs, label updates with
optimistic concurrency, services, events. Objects are named per run, labelled
aiart.test and removed at teardown."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aiodocker
import pytest
from aiart.core import labels as L
from aiart.core.objects import ServiceObject
from aiart.engine.adapter import DockerCluster, tar_context

pytestmark = pytest.mark.docker


@pytest.fixture
async def cluster() -> AsyncIterator[DockerCluster]:
    run = uuid.uuid4().hex[:6]
    async with aiodocker.Docker() as api:
        adapter = DockerCluster(api)
        adapter.run = run  # type: ignore[attr-defined]
        yield adapter
        for config in await api.configs.list(filters={"label": f"aiart.test={run}"}):
            await api.configs.delete(config["ID"])


async def create_config(cluster: DockerCluster, name: str, data: bytes, **labels: str) -> str:
    run = cluster.run  # type: ignore[attr-defined]
    created = await cluster.docker.configs.create(
        name=f"{name}-{run}", data=data.decode(), labels={"aiart.test": run, **labels})
    return str(created["ID"])


async def test_list_read_and_update_labels(cluster: DockerCluster) -> None:
    run = cluster.run  # type: ignore[attr-defined]
    model = f"m{run}"
    cid = await create_config(cluster, "manifest", b"apiVersion: aiart/v1\n", **{L.MODEL: model})
    (config,) = await cluster.list_model_configs(model)
    assert config.id == cid and config.data == b"apiVersion: aiart/v1\n"
    assert config.labels[L.MODEL] == model

    # The swarm is shared with a running operator, which marks this manifest
    # Invalid when it gets to it: a write may lose to that one (CI saw it),
    # so read again and retry, as the operator itself does.
    for _ in range(5):
        (config,) = await cluster.list_model_configs(model)
        updated = await cluster.update_config_labels(config, {**config.labels, L.STATUS: "Pending"})
        if updated is not None:
            break
    assert updated is not None and updated.labels[L.STATUS] == "Pending"
    assert updated.index > config.index
    # A write from a stale read loses, and says so instead of overwriting.
    assert await cluster.update_config_labels(config, {**config.labels, L.STATUS: "Ready"}) is None
    fresh = await cluster.get_config(cid)
    # Ours or, later, the operator's verdict: never the stale write's.
    assert fresh is not None and fresh.labels[L.STATUS] in ("Pending", "Invalid")
    assert await cluster.get_config(f"nothing-{run}") is None


async def test_events_name_the_config_that_changed(cluster: DockerCluster) -> None:
    events = cluster.events()
    first = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0.5)  # the stream is open once the request is sent
    cid = await create_config(cluster, "evented", b"x")
    name = f"evented-{cluster.run}"  # type: ignore[attr-defined]

    async def ours() -> dict[str, object]:
        # The swarm is shared (an operator writes its own configs meanwhile):
        # wait for the event about this config, whatever comes before it.
        event = await first
        while event["Actor"]["Attributes"].get("name") != name:
            event = await anext(events)
        return event

    event = await asyncio.wait_for(ours(), 10)
    assert event["Type"] == "config" and event["Actor"]["ID"] == cid
    await events.aclose()  # type: ignore[attr-defined]


async def test_a_task_whose_first_health_check_has_not_passed_is_starting(
        cluster: DockerCluster) -> None:
    # The operator looks again soon at a version whose container waits for
    # its first health check (control/reconcile.py): the engine's task state
    # must say so, and say "running" once the check passes.
    run = cluster.run  # type: ignore[attr-defined]
    images = await cluster.docker.images.list(filters={"reference": ["aiart/operator"]})
    assert images, "no aiart/operator image: hack/images.sh builds it"
    image = images[0]["RepoTags"][0]
    created = await cluster.docker.services.create(name=f"t{run}-health", labels={
        "aiart.test": run}, task_template={"ContainerSpec": {
            "Image": image, "Command": ["sh", "-c", "sleep 3; touch /tmp/ok; exec sleep 600"],
            "Healthcheck": {"Test": ["CMD", "test", "-f", "/tmp/ok"],
                            "Interval": 200_000_000, "Retries": 3,
                            "StartPeriod": 30_000_000_000}}})
    try:
        raw = await cluster.docker.services.inspect(created["ID"])
        service = ServiceObject(id=raw["ID"], name=raw["Spec"]["Name"],
                                index=raw["Version"]["Index"], labels={}, spec=raw["Spec"])
        seen = []
        deadline = asyncio.get_running_loop().time() + 60
        while asyncio.get_running_loop().time() < deadline:
            tasks = await cluster.task_summary(service)
            seen.append((tasks.starting, tasks.running))
            if tasks.running:
                break
            await asyncio.sleep(0.2)
        assert (1, 0) in seen, f"never seen starting: {seen}"
        assert seen[-1] == (0, 1), f"never seen running: {seen}"
    finally:
        await cluster.docker.services.delete(created["ID"])


def test_build_contexts_are_deterministic() -> None:
    files = {"b": b"2", "Dockerfile": b"FROM scratch\n", "a/c": b"3"}
    assert tar_context(files) == tar_context(dict(reversed(list(files.items()))))
