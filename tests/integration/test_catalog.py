"""One test suite, two catalog backends: configs in the real swarm, and
MongoDB through an in-memory double of the driver (no MongoDB server can be
had here; see docs/catalog.md for what that leaves untested)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import aiodocker
import pytest
from aiart.catalog.configs import KIND, MODEL, DockerCatalog
from aiart.catalog.mongo import MongoCatalog
from aiart.catalog.records import HISTORY_LIMIT, Catalog, Deployment, Query
from aiart.engine.adapter import DockerCluster
from mongomock_motor import AsyncMongoMockClient


@pytest.fixture(params=[pytest.param("docker", marks=pytest.mark.docker), "mongodb"])
async def catalog(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Catalog, str]]:
    prefix = f"c{uuid.uuid4().hex[:6]}"
    if request.param == "mongodb":
        yield MongoCatalog(AsyncMongoMockClient()["aiart"]), prefix
        return
    async with aiodocker.Docker() as api:
        try:
            yield DockerCatalog(DockerCluster(api)), prefix
        finally:
            for config in await api.configs.list(filters={"label": KIND}):
                if config["Spec"]["Labels"].get(MODEL, "").startswith(prefix):
                    await api.configs.delete(config["ID"])


def deployment(model: str, version: str, config_id: str, **extra: object) -> Deployment:
    fields: dict[str, object] = dict(
        model=model, version=version, config_id=config_id, runtime="sklearn",
        manifest=f"metadata: {{name: {model}}}\n", parameters={"replicas": 1, "env": {"A": "b"}},
        labels={"team": "crm"}, image=f"registry:5000/aiart/{model}:{version}-abc",
        image_digest=f"registry:5000/aiart/{model}@sha256:{'1' * 64}",
        artifact_uri="s3://data/m.pkl", artifact_sha256="2" * 64,
        deployed_at=f"2026-01-0{version}T00:00:00Z")
    fields.update(extra)
    return Deployment(**fields)  # type: ignore[arg-type]


async def test_a_deployment_round_trips_with_its_status_history(catalog) -> None:
    cat, p = catalog
    d = deployment(f"{p}-iris", "1", "cfg1", run_id="20260101T000000Z-00000000")
    await cat.record_deployment(d)
    await cat.record_status(d.key, "Building", "building image", "t1")
    await cat.record_status(d.key, "Building", "building image", "t2")  # no change: no event
    await cat.record_status(d.key, "Ready", "serving", "t3")
    got = await cat.get(d.key)
    assert got is not None
    assert got.to_doc() == {**d.to_doc(), "status": "Ready", "history": [
        {"at": "t1", "status": "Building", "message": "building image"},
        {"at": "t3", "status": "Ready", "message": "serving"}]}
    # Recording the deployment again (an operator restart) keeps its history.
    await cat.record_deployment(d)
    again = await cat.get(d.key)
    assert again is not None and [e.status for e in again.history] == ["Building", "Ready"]
    await cat.record_status("unknown/1/x", "Ready", "", "t4")  # unknown: ignored
    assert await cat.get("unknown/1/x") is None


async def test_history_is_bounded(catalog) -> None:
    cat, p = catalog
    d = deployment(f"{p}-busy", "1", "cfg1")
    await cat.record_deployment(d)
    for i in range(HISTORY_LIMIT + 5):
        await cat.record_status(d.key, "Deploying" if i % 2 else "Ready", f"pass {i}", f"t{i}")
    got = await cat.get(d.key)
    assert got is not None and len(got.history) == HISTORY_LIMIT
    assert got.history[-1].message == f"pass {HISTORY_LIMIT + 4}"


async def test_queries_filter_by_name_version_runtime_status_and_label(catalog) -> None:
    cat, p = catalog
    a1 = deployment(f"{p}-a", "1", "x1")
    a2 = deployment(f"{p}-a", "2", "x2", runtime="onnx", labels={"team": "ops"})
    b1 = deployment(f"{p}-b", "1", "x3")
    for d in (a1, a2, b1):
        await cat.record_deployment(d)
    await cat.record_status(a1.key, "Ready", "", "t")
    await cat.record_status(a2.key, "Failed", "boom", "t")

    async def keys(**query: object) -> list[str]:
        found = await cat.find(Query(**query))  # type: ignore[arg-type]
        return [d.key for d in found if d.model.startswith(p)]

    assert await keys(name=f"{p}-a") == [a2.key, a1.key]  # newest first
    assert await keys(name=f"{p}-a", version="1") == [a1.key]
    assert await keys(runtime="onnx") == [a2.key]
    assert await keys(status="failed") == [a2.key]
    assert await keys(labels={"team": "crm"}) == [b1.key, a1.key]
    assert await keys(name=f"{p}-a", labels={"team": "nobody"}) == []
    assert await keys(name=f"{p}-none") == []


async def test_a_new_image_updates_the_record(catalog) -> None:
    cat, p = catalog
    d = deployment(f"{p}-roll", "1", "cfg1")
    await cat.record_deployment(d)
    await cat.record_status(d.key, "Ready", "serving", "t1")
    newer = deployment(f"{p}-roll", "1", "cfg1", image="registry:5000/aiart/roll:1-def",
                       image_digest="registry:5000/aiart/roll@sha256:" + "3" * 64)
    await cat.record_deployment(newer)
    got = await cat.get(d.key)
    assert got is not None
    assert (got.image, got.image_digest[-4:], got.status) == (newer.image, "3333", "Ready")
