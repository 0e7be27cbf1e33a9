"""The REST API over in-memory doubles: roles and scopes, validation with the
operator's parser, uploads into configs or the object store, errors as JSON.
(tests/e2e/test_api_cli.py drives the real one through Traefik.)"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from aiart.api.app import PREFIX, ROUTES, create_app
from aiart.auth.access import ApiKey, Role, new_key
from aiart.auth.keystore import KeyCache
from aiart.core import labels as L
from aiart.core.spec import parse_manifest
from starlette.testclient import TestClient

from tests.fakes import FakeCluster, FakeStore, tiny_model

MANIFEST = b"""apiVersion: aiart/v1
kind: Model
metadata: {name: iris, version: "1"}
spec:
  runtime: sklearn
  auth: {mode: none}
"""


class World:
    def __init__(self, cluster: FakeCluster | None = None, **extra: Any) -> None:
        """``extra``: create_app's charts, passer and pages."""
        self.cluster = cluster or FakeCluster()
        self.store = FakeStore()
        self.stored: dict[str, ApiKey] = {}
        self.keys = KeyCache(self._load)
        self.client = TestClient(create_app(self.cluster, self.store, self.keys, None,
                                            max_upload_bytes=2 * 1024 * 1024, **extra))

    async def _load(self) -> list[ApiKey]:
        return list(self.stored.values())

    def key(self, role: Role, *models: str) -> dict[str, str]:
        text, record = new_key(f"k{len(self.stored)}", role, list(models))
        self.stored[record.id] = record
        self.client.portal.call(self.keys.refresh)  # type: ignore[union-attr]
        return {"X-API-Key": text}

    def revoke(self, headers: dict[str, str]) -> None:
        key_id = headers["X-API-Key"].split("_")[1]
        del self.stored[key_id]
        self.client.portal.call(self.keys.refresh)  # type: ignore[union-attr]

    def served(self, name: str = "iris-1", **labels: str) -> None:
        """The config's labels as the operator leaves them."""
        config = self.cluster.config(name)
        self.cluster.configs[config.id] = replace(config, labels={**config.labels, **labels})


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    with w.client:
        yield w


def deploy(world: World, headers: dict[str, str], manifest: bytes = MANIFEST,
           artifact: bytes | None = None):  # type: ignore[no-untyped-def]
    files = {"manifest": ("manifest.yaml", manifest)}
    if artifact is not None:
        files["artifact"] = ("model.pkl", artifact)
    return world.client.post("/api/v1/models", files=files, headers=headers)


def test_deploy_stores_the_artifact_and_a_manifest_the_operator_accepts(world: World) -> None:
    model = tiny_model()
    answer = deploy(world, world.key(Role.DEPLOYER), artifact=model)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "Pending"
    manifest_config = world.cluster.config("iris-1")
    assert manifest_config.labels[L.MODEL] == "iris"
    stored = parse_manifest(manifest_config.data)  # the operator's parser accepts it
    assert stored.spec.artifact is not None
    artifact_config = world.cluster.config(stored.spec.artifact.uri.removeprefix("config://"))
    assert artifact_config.data == model

    again = deploy(world, world.key(Role.DEPLOYER), artifact=model)
    assert again.status_code == 409 and "exists" in again.json()["error"]


def test_a_large_artifact_goes_to_the_object_store(world: World) -> None:
    big = b"\x80" + b"x" * (600 * 1024)
    answer = deploy(world, world.key(Role.ADMIN), artifact=big)
    assert answer.status_code == 202, answer.text
    assert answer.json()["artifact"] == "s3://aiart-iris/uploads/1/model.pkl"
    assert world.store.objects["aiart-iris", "uploads/1/model.pkl"][0] == big


def test_bad_manifests_get_every_problem(world: World) -> None:
    bad = MANIFEST.replace(b"name: iris", b"name: Iris").replace(b"sklearn", b"tensorflow")
    answer = deploy(world, world.key(Role.DEPLOYER), bad, tiny_model())
    assert answer.status_code == 400
    problems = answer.json()["problems"]
    assert any(p.startswith("metadata.name") for p in problems)
    assert any(p.startswith("spec.runtime") for p in problems)
    assert deploy(world, world.key(Role.DEPLOYER), b"{{{").status_code == 400
    assert not world.cluster.configs, "a refused deploy leaves nothing behind"


def test_roles_and_model_scopes(world: World) -> None:
    assert world.client.get("/api/v1/models").status_code == 401
    viewer = world.key(Role.VIEWER)
    assert deploy(world, viewer, artifact=tiny_model()).status_code == 403
    other = world.key(Role.DEPLOYER, "wine")
    refused = deploy(world, other, artifact=tiny_model())
    assert refused.status_code == 403 and "'iris'" in refused.json()["error"]
    assert deploy(world, world.key(Role.DEPLOYER, "iris"), artifact=tiny_model()
                  ).status_code == 202
    listed = world.client.get("/api/v1/models", headers=viewer).json()["models"]
    assert [m["name"] for m in listed] == ["iris"]
    assert world.client.get("/api/v1/models", headers=other).json()["models"] == []
    assert world.client.delete("/api/v1/models/iris", headers=viewer).status_code == 403


def test_status_logs_and_removal(world: World) -> None:
    admin = world.key(Role.ADMIN)
    deploy(world, admin, artifact=tiny_model())
    config = world.cluster.config("iris-1")  # as the operator leaves it once served
    world.cluster.configs[config.id] = replace(config, labels={
        **config.labels, L.STATUS: "Ready", L.STATUS_CURRENT: "true",
        L.STATUS_ENDPOINT: "http://gw/models/iris"})
    model = world.client.get("/api/v1/models/iris", headers=admin).json()
    assert (model["status"], model["endpoint"]) == ("Ready", "http://gw/models/iris")
    assert world.client.get("/api/v1/models/nope", headers=admin).status_code == 404
    assert world.client.get("/api/v1/models/Bad!", headers=admin).status_code == 400
    assert world.client.get("/api/v1/models/iris/logs", headers=admin).status_code == 404
    assert world.client.get("/api/v1/models/iris/logs?tail=0", headers=admin).status_code == 400

    removed = world.client.delete("/api/v1/models/iris/versions/1", headers=admin)
    assert removed.status_code == 200 and removed.json()["removed"] == ["iris-1"]
    assert not world.cluster.configs, "the version's artifact config goes with it"
    assert world.client.delete("/api/v1/models/iris", headers=admin).status_code == 404


def test_a_deployer_promotes_or_aborts_the_rollout_in_progress(world: World) -> None:
    deployer = world.key(Role.DEPLOYER, "iris")
    deploy(world, deployer, artifact=tiny_model())
    url = "/api/v1/models/iris/rollout"
    refused = world.client.post(f"{url}/promote", headers=deployer)
    assert refused.status_code == 409 and "no rollout in progress" in refused.json()["error"]
    config = world.cluster.config("iris-1")  # as the operator leaves a canary under way
    world.cluster.configs[config.id] = replace(config, labels={
        **config.labels, "aiart.rollout.phase": "Progressing", "aiart.rollout.stable": "0",
        "aiart.rollout.step": "1", L.STATUS_ROLLOUT: "canary from version 0: step 2 of 4"})
    assert world.client.post(f"{url}/promote", headers=world.key(Role.VIEWER)).status_code == 403
    assert world.client.post(f"{url}/promote", headers=world.key(Role.DEPLOYER, "wine")
                             ).status_code == 403
    assert world.client.post(f"{url}/delete", headers=deployer).status_code == 404
    moved = world.client.post(f"{url}/abort", headers=deployer)
    assert moved.status_code == 202 and moved.json()["version"] == "1"
    assert world.cluster.config("iris-1").labels["aiart.rollout.command"] == "abort"
    view = world.client.get("/api/v1/models/iris", headers=deployer).json()["versions"][0]
    assert view["rollout"] == {"phase": "Progressing", "stable": "0", "step": "1",
                               "status": "canary from version 0: step 2 of 4"}


def test_openapi_document_is_served_without_a_credential(world: World) -> None:
    document = world.client.get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    # Every call the API answers is in it, with its methods.
    for route in ROUTES:
        path = route.path.removeprefix(PREFIX).replace(":path}", "}")
        if path == "/openapi.json":
            continue
        assert path in document["paths"], path
        for method in route.methods or ():
            if method != "HEAD":
                assert method.lower() in document["paths"][path], (method, path)
    assert world.client.get("/api/v1/nothing").json() == {"error": "Not Found"}


def test_oversized_and_malformed_requests_are_refused(world: World) -> None:
    key = world.key(Role.DEPLOYER)
    huge_manifest = MANIFEST + b"# " + b"x" * (70 * 1024) + b"\n"
    assert deploy(world, key, huge_manifest, tiny_model()).status_code == 413
    too_big = b"\x80" + b"x" * (3 * 1024 * 1024)  # the app here takes 2 MiB
    answer = deploy(world, key, artifact=too_big)
    assert answer.status_code == 413 and "larger than" in answer.json()["error"]
    not_multipart = world.client.post("/api/v1/models", content=b"garbage", headers={
        **key, "Content-Type": "application/json"})
    assert not_multipart.status_code == 415
    no_manifest = world.client.post("/api/v1/models", files={"artifact": ("m", b"x")},
                                    headers=key)
    assert no_manifest.status_code == 400 and "manifest part" in no_manifest.json()["error"]
    # A manifest sent as a plain form field rather than a file, too large.
    as_field = world.client.post("/api/v1/models", headers=key, files={
        "manifest": (None, MANIFEST + b"#" + b"x" * (70 * 1024))})
    assert as_field.status_code in (400, 413) and "error" in as_field.json()
    assert not world.cluster.configs and not world.store.objects


def test_a_batch_job_is_declared_as_a_labelled_config(world: World) -> None:
    deployer, viewer = world.key(Role.DEPLOYER, "iris"), world.key(Role.VIEWER, "iris")
    body = {"model": "iris", "input": "s3://aiart-iris/in/", "chunkRows": 500}
    assert world.client.post("/api/v1/jobs", json=body,
                             headers=deployer).status_code == 404  # no model yet
    assert deploy(world, deployer, artifact=tiny_model()).status_code == 202
    answer = world.client.post("/api/v1/jobs", json=body, headers=deployer)
    assert answer.status_code == 400 and "no input under" in answer.json()["error"]
    world.client.portal.call(world.store.ensure_bucket, "aiart-iris")  # type: ignore[union-attr]
    world.client.portal.call(  # type: ignore[union-attr]
        lambda: world.store.put("aiart-iris", "in/a.csv", b"1,2\n"))

    for who, json_body, status, words in (
            (viewer, body, 403, "needs role deployer"),
            (world.key(Role.DEPLOYER, "other"), body, 403, "may not"),
            (deployer, {**body, "input": "s3://aiart-other/x/"}, 400, "not in model iris"),
            (deployer, {**body, "version": "7"}, 404, "no version 7"),
            (deployer, {**body, "colour": "red"}, 400, "colour")):
        answer = world.client.post("/api/v1/jobs", json=json_body, headers=who)
        assert answer.status_code == status, answer.text
        assert words in answer.json()["error"]

    answer = world.client.post("/api/v1/jobs", json=body, headers=deployer)
    assert answer.status_code == 202, answer.text
    job = answer.json()
    [config] = [c for c in world.cluster.configs.values() if L.JOB in c.labels]
    assert config.name == f"aiart-job-{job['id']}" and config.labels[L.JOB_OF] == "iris"
    assert (job["status"], job["chunkRows"], job["results"]) == (
        "Pending", 500, f"s3://aiart-iris/jobs/{job['id']}/")
    assert world.client.get(f"/api/v1/jobs/{job['id']}", headers=viewer).json()["id"] == job["id"]
    assert [j["id"] for j in world.client.get("/api/v1/jobs", headers=viewer).json()["jobs"]] \
        == [job["id"]]
    # Another model's viewer sees none of it.
    other = world.key(Role.VIEWER, "other")
    assert world.client.get("/api/v1/jobs", headers=other).json()["jobs"] == []
    assert world.client.get(f"/api/v1/jobs/{job['id']}", headers=other).status_code == 403
    assert world.client.delete(f"/api/v1/jobs/{job['id']}", headers=viewer).status_code == 403
    assert world.client.delete(f"/api/v1/jobs/{job['id']}",
                               headers=deployer).json()["removed"] == [config.name]
    assert world.client.get(f"/api/v1/jobs/{job['id']}", headers=viewer).status_code == 404


def test_the_clis_progress_bar() -> None:
    from aiart.cli.api import progress_bar

    assert progress_bar(None, None) == ""
    assert progress_bar(300, None) == "300 rows"
    bar = progress_bar(45_000, 100_000, width=20)
    assert bar == "[#########...........] 45000/100000 rows  45%"
    assert progress_bar(100, 100, width=4) == "[####] 100/100 rows 100%"
