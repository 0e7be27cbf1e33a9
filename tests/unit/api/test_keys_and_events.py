"""API keys made and revoked through the REST API (admins only; viewers'
and deployers' keys only), and a model's events from the catalog.
(tests/e2e/test_keys_api.py does the same through the real stack, its
engine proxy and its gateway.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aiart.api.app import create_app
from aiart.auth.access import ApiKey, Role, new_key, stream_key
from aiart.auth.keystore import KeyCache, KeyStore
from aiart.catalog.configs import DockerCatalog
from aiart.catalog.records import Deployment
from starlette.testclient import TestClient

from tests.fakes import FakeCluster, FakeStore


class World:
    """The API over a cluster in memory, its keys read from the cluster's
    key records as the service reads them."""

    def __init__(self, **extra: Any) -> None:
        """``extra``: create_app's pages and the rest."""
        self.cluster = FakeCluster()
        self.store = KeyStore(self.cluster)
        self.keys = KeyCache(self.store.keys)
        self.client = TestClient(create_app(self.cluster, FakeStore(), self.keys, None,
                                            **extra))

    def key(self, role: Role, *models: str, name: str | None = None) -> tuple[dict[str, str],
                                                                                ApiKey]:
        text, record = new_key(name or f"k{len(self.cluster.configs)}", role, list(models))
        self.client.portal.call(self.store.add, record)  # type: ignore[union-attr]
        self.client.portal.call(self.keys.refresh)  # type: ignore[union-attr]
        return {"X-API-Key": text}, record


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    with w.client:
        yield w


def test_an_admin_makes_a_key_shown_once_that_works_at_once(world: World) -> None:
    admin, _ = world.key(Role.ADMIN)
    made = world.client.post("/api/v1/keys", headers=admin,
                             json={"name": "line-3", "role": "deployer", "models": ["iris"]})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["name"] == "line-3" and body["role"] == "deployer" and body["models"] == ["iris"]
    new = {"X-API-Key": body["key"]}
    # It works at once, for what its role and scope allow.
    assert world.client.get("/api/v1/models/iris/events", headers=new).status_code == 200
    assert world.client.get("/api/v1/models/wine/events", headers=new).status_code == 403
    # Listed without its secret or digest, and only for admins.
    listed = world.client.get("/api/v1/keys", headers=admin).json()["keys"]
    [shown] = [k for k in listed if k["name"] == "line-3"]
    assert "key" not in shown and "sha256" not in shown and body["key"] not in str(listed)
    assert world.client.get("/api/v1/keys", headers=new).status_code == 403
    # The record holds the digest alone.
    [record] = [c for c in world.cluster.configs.values() if c.name == f"aiart-apikey-{shown['id']}"]
    assert body["key"].split("_", 2)[2].encode() not in record.data

    revoked = world.client.delete(f"/api/v1/keys/{shown['id']}", headers=admin)
    assert revoked.status_code == 200 and revoked.json()["revoked"]["name"] == "line-3"
    refused = world.client.get("/api/v1/models/iris/events", headers=new)
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]
    assert world.client.delete(f"/api/v1/keys/{shown['id']}", headers=admin).status_code == 404


def test_only_admins_make_or_revoke_keys(world: World) -> None:
    _, victim = world.key(Role.VIEWER, name="victim")
    for role in (Role.VIEWER, Role.DEPLOYER):
        headers, _ = world.key(role)
        assert world.client.post("/api/v1/keys", headers=headers,
                                 json={"name": "mine", "role": "deployer"}).status_code == 403
        assert world.client.delete(f"/api/v1/keys/{victim.id}",
                                   headers=headers).status_code == 403
    assert world.client.post("/api/v1/keys", json={"name": "anon"}).status_code == 401
    assert [k.name for k in world.client.portal.call(world.store.keys)  # type: ignore[union-attr]
            ].count("victim") == 1


def test_an_admins_key_is_made_and_revoked_on_a_manager_only(world: World) -> None:
    admin, record = world.key(Role.ADMIN, name="root")
    made = world.client.post("/api/v1/keys", headers=admin, json={"name": "x", "role": "admin"})
    assert made.status_code == 400 and "on a manager" in made.json()["error"]
    kept = world.client.delete(f"/api/v1/keys/{record.id}", headers=admin)
    assert kept.status_code == 403 and "aiart keys revoke" in kept.json()["error"]
    # A stream bridge's key goes with its stream, not through the API.
    _, bridge = stream_key(b"k" * 32, "iris", "line")
    world.client.portal.call(world.store.add, bridge)  # type: ignore[union-attr]
    refused = world.client.delete(f"/api/v1/keys/{bridge.id}", headers=admin)
    assert refused.status_code == 403 and "stream" in refused.json()["error"]
    names = [k.name for k in world.client.portal.call(world.store.keys)]  # type: ignore[union-attr]
    assert "root" in names and bridge.name in names and "x" not in names


@pytest.mark.parametrize(("body", "says"), [
    ({"name": "bad name!"}, "name:"),
    ({"name": "aiart-stream-x"}, "kept for the keys aiart makes"),
    ({"name": "ok", "role": "owner"}, "role must be viewer or deployer"),
    ({"name": "ok", "models": "iris"}, "models must be a list"),
    ({"name": "ok", "models": ["Not A Model"]}, "is not a model name"),
    ({"name": "ok", "admin": True}, "unknown field"),
    ({"name": "taken"}, "exists"),
])
def test_a_bad_key_request_is_refused_and_leaves_nothing(world: World, body: object,
                                                         says: str) -> None:
    admin, _ = world.key(Role.ADMIN)
    world.key(Role.VIEWER, name="taken")
    before = dict(world.cluster.configs)
    answer = world.client.post("/api/v1/keys", headers=admin, json=body)
    assert answer.status_code == 400 and says in answer.json()["error"], answer.text
    assert world.cluster.configs == before
    assert world.client.post("/api/v1/keys", headers=admin, content=b"{").status_code == 400


def test_a_models_events_newest_first_for_who_may_see_it(world: World) -> None:
    catalog = DockerCatalog(world.cluster)
    for version in ("1", "2"):
        record = Deployment(model="iris", version=version, config_id=f"c{version}",
                            runtime="sklearn", manifest="", parameters={}, labels={},
                            image="", deployed_at=f"2026-12-0{version}T00:00:00Z")
        world.client.portal.call(catalog.record_deployment, record)  # type: ignore[union-attr]
        for minute, status in enumerate(("Building", "Ready")):
            world.client.portal.call(  # type: ignore[union-attr]
                catalog.record_status, record.key, status, f"{status} <b>{version}</b>",
                f"2026-12-0{version}T00:0{minute}:00Z")
    other = Deployment(model="wine", version="1", config_id="w", runtime="sklearn",
                       manifest="", parameters={}, labels={}, image="")
    world.client.portal.call(catalog.record_deployment, other)  # type: ignore[union-attr]
    world.client.portal.call(catalog.record_status, other.key, "Failed", "no",  # type: ignore[union-attr]
                             "2026-12-09T00:00:00Z")
    viewer, _ = world.key(Role.VIEWER, "iris")
    events = world.client.get("/api/v1/models/iris/events", headers=viewer).json()["events"]
    assert [(e["version"], e["status"]) for e in events] == [
        ("2", "Ready"), ("2", "Building"), ("1", "Ready"), ("1", "Building")]
    assert events[0]["message"] == "Ready <b>2</b>" and events[0]["at"].startswith("2026-12-02")
    assert world.client.get("/api/v1/models/wine/events", headers=viewer).status_code == 403
    assert world.client.get("/api/v1/models/iris/events").status_code == 401
