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


def test_build_contexts_are_deterministic() -> None:
    files = {"b": b"2", "Dockerfile": b"FROM scratch\n", "a/c": b"3"}
    assert tar_context(files) == tar_context(dict(reversed(list(files.items()))))
