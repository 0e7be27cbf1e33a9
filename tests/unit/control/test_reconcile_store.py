"""The reconcile loop with an object store and a catalog (in-memory doubles):
artifacts from s3:// and run://, digests, the bucket's layout, credentials,
outages, and the record each deployment leaves in the catalog."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest
from aiart.catalog.configs import DockerCatalog
from aiart.catalog.records import Query
from aiart.control.deps import Deps
from aiart.control.reconcile import reconcile_model
from aiart.core import labels as L
from aiart.core.settings import OperatorSettings
from aiart.store.policy import secret_for
from aiart.store.runs import list_runs, upload_run

from tests.fakes import FakeBuilder, FakeCluster, FakeGateway, FakeStore, tiny_model


@pytest.fixture
def world() -> tuple[Deps, FakeCluster, FakeStore]:
    cluster = FakeCluster()
    store = FakeStore()
    deps = Deps(cluster=cluster, builder=FakeBuilder(), gateway=FakeGateway(cluster),
                settings=OperatorSettings(public_url="http://gw:8080",
                                  model_store_endpoint="store:9000"),
                store=store, catalog=DockerCatalog(cluster))
    return deps, cluster, store


def declare(cluster: FakeCluster, name: str, version: str, uri: str, extra: str = "") -> str:
    cfg = f"{name}-{version}"
    cluster.add_config(cfg, (
        f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {name}, version: '{version}', "
        f"labels: {{team: crm}}}}\n"
        f"spec:\n  runtime: sklearn\n  artifact: {{uri: '{uri}'{extra}}}\n").encode(),
        {L.MODEL: name})
    return cfg


def declare_spec(cluster: FakeCluster, name: str, version: str, uri: str, spec: str) -> str:
    cfg = f"{name}-{version}"
    cluster.add_config(cfg, (
        f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {name}, version: '{version}'}}\n"
        f"spec:\n  runtime: sklearn\n  artifact: {{uri: '{uri}'}}\n{spec}").encode(),
        {L.MODEL: name})
    return cfg


async def settle(deps: Deps, model: str, passes: int = 8) -> None:
    for _ in range(passes):
        outcome = await reconcile_model(deps, model)
        if outcome.requeue_after is None and outcome.transient is None:
            return


async def put(store: FakeStore, bucket: str, key: str, data: bytes) -> None:
    await store.ensure_bucket(bucket)
    await store.put(bucket, key, data)


async def test_s3_artifact_is_deployed_and_archived_in_the_models_bucket(world) -> None:
    deps, cluster, store = world
    model = tiny_model()
    await put(store, "datasets", "iris/model.pkl", model)
    declare(cluster, "iris", "1", "s3://datasets/iris/model.pkl")
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"
    assert "aiart-iris" in store.buckets
    assert store.objects["aiart-iris", "artifacts/1/model.pkl"][0] == model
    assert store.objects["aiart-iris", "artifacts/1/model.pkl"][1]["sha256"] == (
        hashlib.sha256(model).hexdigest())
    assert store.objects["aiart-iris", "manifests/1.yaml"][0] == cluster.config("iris-1").data

    calls = store.calls
    await settle(deps, "iris")
    # A settled pass reads the artifact again (its content decides the image),
    # but writes nothing.
    assert store.calls - calls <= 2


async def test_a_digest_mismatch_is_refused_and_nothing_is_built(world) -> None:
    deps, cluster, store = world
    await put(store, "datasets", "m.pkl", tiny_model())
    declare(cluster, "iris", "1", "s3://datasets/m.pkl", ", sha256: '" + "a" * 64 + "'")
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Failed"
    assert f"but the manifest expects {'a' * 64}" in cluster.config("iris-1").labels[
        L.STATUS_MESSAGE]
    assert not cluster.services


async def test_a_missing_object_fails_with_its_uri_then_recovers_once_uploaded(world) -> None:
    deps, cluster, store = world
    declare(cluster, "iris", "1", "s3://datasets/later.pkl")
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Failed"
    assert "s3://datasets/later.pkl is not in the object store" in cluster.config(
        "iris-1").labels[L.STATUS_MESSAGE]
    await put(store, "datasets", "later.pkl", tiny_model())
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"


async def test_a_stored_run_is_deployed_by_run_uri_and_recorded(world, tmp_path: Path) -> None:
    deps, cluster, store = world
    (tmp_path / "model.pkl").write_bytes(tiny_model())
    (tmp_path / "roc.txt").write_text("0.97")
    run = await upload_run(store, "iris", tmp_path / "model.pkl", metrics={"accuracy": 0.97},
                           params={"C": 1.0}, files=[("plots/roc.txt", tmp_path / "roc.txt")])
    assert sorted(k for b, k in store.objects if b == "aiart-iris") == sorted([
        f"runs/{run.run_id}/run.json", f"runs/{run.run_id}/model/model.pkl",
        f"runs/{run.run_id}/metrics.json", f"runs/{run.run_id}/params.json",
        f"runs/{run.run_id}/files/plots/roc.txt"])
    assert [r.run_id for r in await list_runs(store, "iris")] == [run.run_id]

    declare(cluster, "iris", "1", f"run://iris/{run.run_id}")
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"
    assert deps.catalog is not None
    [entry] = await deps.catalog.find(Query(name="iris"))
    assert entry.run_id == run.run_id
    assert entry.artifact_sha256 == run.sha256
    assert entry.artifact_uri == f"run://iris/{run.run_id}"
    assert entry.image_digest.endswith("@sha256:" + "0" * 64)
    assert entry.labels == {"team": "crm"}
    assert [e.status for e in entry.history] == ["Building", "Deploying", "Ready"]
    cluster.remove_config("iris-1")
    await settle(deps, "iris")
    [entry] = await deps.catalog.find(Query(name="iris"))
    assert (entry.status, entry.history[-1].status) == ("Removed", "Removed")


async def test_an_altered_run_is_refused(world, tmp_path: Path) -> None:
    deps, cluster, store = world
    (tmp_path / "model.pkl").write_bytes(tiny_model())
    run = await upload_run(store, "iris", tmp_path / "model.pkl")
    await store.put("aiart-iris", f"runs/{run.run_id}/model/model.pkl", b"tampered")
    declare(cluster, "iris", "1", f"run://iris/{run.run_id}")
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Failed"
    assert "the stored run was altered" in cluster.config("iris-1").labels[L.STATUS_MESSAGE]


async def test_store_outage_stalls_only_the_models_that_need_it(world) -> None:
    deps, cluster, store = world
    await put(store, "datasets", "m.pkl", tiny_model())
    store.down = True
    declare(cluster, "remote", "1", "s3://datasets/m.pkl")
    cluster.add_config("local-model", tiny_model())
    declare(cluster, "local", "1", "config://local-model")
    outcome = await reconcile_model(deps, "remote")
    assert outcome.transient is not None, "the loop must back off and retry"
    assert cluster.status("remote-1") == "Pending"
    assert "unreachable" in cluster.config("remote-1").labels[L.STATUS_MESSAGE]
    await settle(deps, "local")
    assert cluster.status("local-1") == "Ready"

    store.down = False
    await settle(deps, "remote")
    assert cluster.status("remote-1") == "Ready"
    # The bucket and the archive of the model that proceeded come once the store is back.
    await settle(deps, "local")
    assert ("aiart-local", "artifacts/1/model.pkl") in store.objects


async def test_a_served_model_stays_ready_while_the_store_is_away(world) -> None:
    deps, cluster, store = world
    await put(store, "datasets", "m.pkl", tiny_model())
    declare(cluster, "iris", "1", "s3://datasets/m.pkl")
    await settle(deps, "iris")
    store.down = True
    outcome = await reconcile_model(deps, "iris")
    labels = cluster.config("iris-1").labels
    assert labels[L.STATUS] == "Ready"
    assert "unreachable" in labels["aiart.status.dependency"]
    assert outcome.requeue_after is not None or outcome.transient is not None
    assert [s.name for s in cluster.services.values()] == ["aiart-iris-1"]
    store.down = False
    await settle(deps, "iris")
    assert "aiart.status.dependency" not in cluster.config("iris-1").labels


async def test_a_model_gets_keys_of_its_own_as_secrets_only(world) -> None:
    deps, cluster, _ = world
    cluster.add_config("m", tiny_model())
    declare_spec(cluster, "iris", "1", "config://m", "  store: {credentials: true}\n")
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Failed"
    message = cluster.config("iris-1").labels[L.STATUS_MESSAGE]
    assert "AIART_STORE_GATEWAY_KEY_FILE" in message and "never the store's" in message
    assert not cluster.secrets

    deps = dataclasses.replace(deps, store_gateway_key=b"gateway-key-0123456789")
    cluster.remove_config("iris-1")
    declare_spec(cluster, "iris", "2", "config://m", "  store: {credentials: true}\n")
    await settle(deps, "iris")
    assert cluster.status("iris-2") == "Ready"
    [service] = cluster.services.values()
    container = service.spec["TaskTemplate"]["ContainerSpec"]
    env = dict(item.split("=", 1) for item in container["Env"])
    assert env["AIART_STORE_ENDPOINT"] == "store:9000"
    assert env["AIART_STORE_BUCKET"] == "aiart-iris"
    assert env["AIART_STORE_ACCESS_KEY_FILE"] == "/run/secrets/aiart-store-access-key"
    given = {s["SecretName"]: (s["SecretID"], s["File"]["Mode"]) for s in container["Secrets"]}
    assert set(given) == set(cluster.secrets)
    data = {name: cluster.secret_data[name][0] for name in given}
    access = next(v for n, v in data.items() if "-access-" in n)
    secret = next(v for n, v in data.items() if "-secret-" in n)
    assert access == b"aiart-iris"
    assert secret.decode() == secret_for(b"gateway-key-0123456789", "aiart-iris")
    assert all(mode == 0o400 for _, mode in given.values())

    # The model gone, its keys go with it.
    cluster.remove_config("iris-2")
    await settle(deps, "iris")
    assert not cluster.services and not cluster.secrets


async def test_payload_logging_gives_the_model_its_keys_and_the_sample(world) -> None:
    deps, cluster, _ = world
    deps = dataclasses.replace(deps, store_gateway_key=b"gateway-key-0123456789")
    cluster.add_config("m", tiny_model())
    declare_spec(cluster, "iris", "1", "config://m", "  logging: {sample: 0.25}\n")
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"
    [service] = cluster.services.values()
    container = service.spec["TaskTemplate"]["ContainerSpec"]
    env = dict(item.split("=", 1) for item in container["Env"])
    assert env["AIART_PAYLOAD_SAMPLE"] == "0.25"
    assert env["AIART_STORE_BUCKET"] == "aiart-iris"
    assert {s["SecretName"] for s in container["Secrets"]} == set(cluster.secrets)
    # Without a store gateway, a log that could not be written is refused.
    deps = dataclasses.replace(deps, store_gateway_key=None)
    declare_spec(cluster, "other", "1", "config://m", "  logging: {sample: 1}\n")
    await settle(deps, "other")
    assert cluster.status("other-1") == "Failed"
    assert cluster.config("other-1").labels[L.STATUS_MESSAGE].startswith("spec.logging:")


async def test_bucket_is_kept_unless_the_manifest_asks_to_delete_it(world) -> None:
    deps, cluster, store = world
    cluster.add_config("m", tiny_model())
    declare(cluster, "keep", "1", "config://m")
    declare_spec(cluster, "drop", "1", "config://m", "  store: {deleteWithModel: true}\n")
    await settle(deps, "keep")
    await settle(deps, "drop")
    assert {"aiart-keep", "aiart-drop"} <= store.buckets
    cluster.remove_config("keep-1")
    cluster.remove_config("drop-1")
    store.down = True
    with pytest.raises(Exception, match="unreachable"):
        await reconcile_model(deps, "drop")
    assert cluster.services, "the service stays until its bucket is gone"
    store.down = False
    await settle(deps, "keep")
    await settle(deps, "drop")
    assert "aiart-keep" in store.buckets and "aiart-drop" not in store.buckets
    assert not cluster.services
    # The catalog outlives the configs.
    assert deps.catalog is not None
    assert {d.model for d in await deps.catalog.find(Query())} == {"keep", "drop"}


class FlakyCatalog(DockerCatalog):
    """The Docker catalog over the fake cluster, with an off switch."""

    down = False

    async def record_deployment(self, deployment):  # type: ignore[no-untyped-def]
        if self.down:
            raise ConnectionError("catalog down")
        await super().record_deployment(deployment)

    async def record_status(self, key, status, message, at):  # type: ignore[no-untyped-def]
        if self.down:
            raise ConnectionError("catalog down")
        await super().record_status(key, status, message, at)


async def test_a_catalog_outage_neither_stops_serving_nor_loses_events(world) -> None:
    deps, cluster, store = world
    catalog = FlakyCatalog(cluster)
    deps = Deps(cluster=deps.cluster, builder=deps.builder, gateway=deps.gateway,
                settings=deps.settings, store=store, catalog=catalog)
    cluster.add_config("m", tiny_model())
    declare(cluster, "iris", "1", "config://m")
    await reconcile_model(deps, "iris")  # recorded, Building, Deploying
    catalog.down = True
    await settle(deps, "iris")
    assert cluster.status("iris-1") == "Ready"
    catalog.down = False
    await reconcile_model(deps, "iris")
    [entry] = await catalog.find(Query(name="iris"))
    assert [e.status for e in entry.history] == ["Building", "Deploying", "Ready"]
