"""A model's stream bridges (control/streams.py) against the fake engine:
one service per stream of the serving version, with a key of its own that
the key store knows, following the manifest, gone with the model."""

from __future__ import annotations

import dataclasses
import json

import pytest
from aiart.auth.access import ApiKey, Role
from aiart.control.deps import Deps
from aiart.control.reconcile import reconcile_model
from aiart.core import labels as L
from aiart.core.settings import OperatorSettings

from tests.fakes import FakeBuilder, FakeCluster, FakeGateway, tiny_model
from tests.unit.control.test_reconcile_store import declare_spec, settle

STREAMS = ("  auth: {mode: apikey}\n"
           "  streams: [{name: line1, topics: ['plant/+/f'], format: row, columns: [a, b]}]\n")


@pytest.fixture
def world() -> tuple[Deps, FakeCluster]:
    cluster = FakeCluster()
    cluster.secrets["aiart-broker-password"] = "broker-secret-id"
    deps = Deps(cluster=cluster, builder=FakeBuilder(), gateway=FakeGateway(cluster),
                settings=OperatorSettings(public_url="http://gw:8080",
                                          gateway_url="http://traefik:81",
                                          stream_image="aiart/operator:1"),
                probe_key=b"probe-key-0123456789")
    cluster.add_config("m", tiny_model())
    return deps, cluster


def env_of(spec: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return dict(item.split("=", 1) for item in spec["TaskTemplate"]["ContainerSpec"]["Env"])


async def test_a_stream_gets_a_bridge_with_a_key_of_its_own(world) -> None:
    deps, cluster = world
    declare_spec(cluster, "iris", "1", "config://m", STREAMS)
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"
    [bridge] = await cluster.list_stream_services("iris")
    # Not a version of the model: the model's own list does not hold it.
    assert [s.name for s in await cluster.list_services("iris")] == ["aiart-iris-1"]
    assert bridge.name == "aiart-stream-iris-line1"
    spec = bridge.spec
    env = env_of(spec)
    assert json.loads(env["AIART_STREAM"])["topics"] == ["plant/+/f"]
    assert env["AIART_STREAM_MODEL"] == "iris"
    assert env["AIART_STREAM_GATEWAY_URL"] == "http://traefik:81"
    container = spec["TaskTemplate"]["ContainerSpec"]
    assert container["Image"] == "aiart/operator:1" and container["ReadOnly"]
    assert spec["TaskTemplate"]["Networks"] == [{"Target": "aiart-internal"}]
    given = {s["File"]["Name"]: s["SecretName"] for s in container["Secrets"]}
    assert given["aiart-broker-password"] == "aiart-broker-password"
    key_text = cluster.secret_data[given["aiart-stream-key"]][0].decode()
    [record] = [ApiKey.from_json(c.data) for c in await cluster.list_configs(L.API_KEY)]
    assert (record.name, record.role, record.models) == (
        "aiart-stream-iris-line1", Role.VIEWER, ("iris",))
    assert key_text.startswith(f"aiart_{record.id}_") and record.matches(key_text.split("_")[2])

    # A pass more changes nothing; a changed stream updates its bridge.
    calls = len(cluster.calls)
    await settle(deps, "iris")
    assert not [c for c in cluster.calls[calls:] if "stream" in c]
    cluster.remove_config("iris-1")
    declare_spec(cluster, "iris", "1", "config://m", STREAMS.replace("columns: [a, b]",
                                                                     "columns: [b, a]"))
    await settle(deps, "iris")
    [bridge] = await cluster.list_stream_services("iris")
    assert json.loads(env_of(bridge.spec)["AIART_STREAM"])["columns"] == ["b", "a"]


async def test_a_stream_dropped_or_a_model_removed_takes_its_bridge_and_key(world) -> None:
    deps, cluster = world
    declare_spec(cluster, "iris", "1", "config://m", STREAMS)
    await settle(deps, "iris")
    assert await cluster.list_stream_services("iris")
    # Version 2 serves without streams: the bridge and its key go.
    declare_spec(cluster, "iris", "2", "config://m", "  auth: {mode: apikey}\n")
    cluster.remove_config("iris-1")
    await settle(deps, "iris")
    assert not await cluster.list_stream_services("iris")
    assert not await cluster.list_configs(L.API_KEY)
    # Back with streams, then the model removed: nothing of it is left.
    cluster.remove_config("iris-2")
    declare_spec(cluster, "iris", "3", "config://m", STREAMS)
    await settle(deps, "iris")
    assert await cluster.list_stream_services("iris")
    cluster.remove_config("iris-3")
    await settle(deps, "iris")
    assert not cluster.services and not await cluster.list_configs(L.API_KEY)
    assert not cluster.secrets.keys() - {"aiart-broker-password"}


async def test_streams_that_cannot_run_here_say_why(world) -> None:
    deps, cluster = world
    del cluster.secrets["aiart-broker-password"]
    declare_spec(cluster, "iris", "1", "config://m", STREAMS)
    outcome = None
    for _ in range(5):
        outcome = await reconcile_model(deps, "iris")
    assert outcome is not None and "aiart-broker-password is missing" in str(outcome.transient)
    assert not await cluster.list_stream_services("iris")
    deps = dataclasses.replace(deps, settings=deps.settings.model_copy(
        update={"stream_image": ""}))
    cluster.secrets["aiart-broker-password"] = "broker-secret-id"
    outcome = await reconcile_model(deps, "iris")
    assert "AIART_STREAM_IMAGE" in str(outcome.transient)


BINDING = b"name: press\ntopics: ['plant/+/press']\nformat: row\ncolumns: [a, b]\n"


async def test_a_binding_config_adds_a_stream_to_a_model_and_says_how_it_stands(world) -> None:
    deps, cluster = world
    bind = {L.STREAM_BINDING: "iris"}
    cluster.add_config("press-binding", BINDING, bind)
    cluster.add_config("clash", b"name: line1\ntopics: [a/b]\n", bind)
    cluster.add_config("broken", b"name: x\ntopics: []\nformat: csv\n", bind)
    declare_spec(cluster, "iris", "1", "config://m", STREAMS)
    await settle(deps, "iris")
    services = {s.labels[L.STREAM]: s for s in await cluster.list_stream_services("iris")}
    assert sorted(services) == ["line1", "press"]
    env = env_of(services["press"].spec)  # type: ignore[arg-type]
    assert json.loads(env["AIART_STREAM"])["topics"] == ["plant/+/press"]
    # Its bridge's key like a manifest's stream's.
    assert {ApiKey.from_json(c.data).name for c in await cluster.list_configs(L.API_KEY)} == {
        "aiart-stream-iris-line1", "aiart-stream-iris-press"}
    labels = cluster.config("press-binding").labels
    assert (labels[L.STATUS], labels[L.STATUS_MESSAGE]) == (
        "Ready", "bridged by aiart-stream-iris-press")
    assert cluster.status("clash") == "Invalid"
    assert "a stream named line1 already" in cluster.config("clash").labels[L.STATUS_MESSAGE]
    assert cluster.status("broken") == "Invalid"
    problems = cluster.config("broken").labels[L.STATUS_MESSAGE]
    assert "stream.topics" in problems and "stream.format" in problems

    # The binding removed: its bridge and key go, the manifest's stay.
    cluster.remove_config("press-binding")
    await settle(deps, "iris")
    assert [s.labels[L.STREAM] for s in await cluster.list_stream_services("iris")] == ["line1"]
    assert [ApiKey.from_json(c.data).name for c in await cluster.list_configs(L.API_KEY)] == [
        "aiart-stream-iris-line1"]
    # The model removed: the bindings wait for it.
    cluster.remove_config("iris-1")
    await settle(deps, "iris")
    assert not await cluster.list_stream_services("iris")
    assert cluster.status("clash") == "Pending"
