"""The object store and the catalog end to end: the stack's S3 server, the
operator in the swarm, the aiart CLI as a user runs it, Traefik in front."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import docker
import httpx
import pytest
from aiart.cli.store import store_env_file
from aiart.store.client import ObjectStore, StoreSettings

from tests.e2e.conftest import STACK, Models, wait_for

pytestmark = pytest.mark.e2e
ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                   "data": [5.1, 3.5, 1.4, 0.2]}]}


def store_keys() -> dict[str, str]:
    lines = store_env_file().read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line)


@pytest.fixture(scope="module")
def store(models: Models) -> Iterator[ObjectStore]:
    keys = store_keys()
    client = ObjectStore(StoreSettings(endpoint=keys["AIART_S3_ENDPOINT"],
                                       access_key=keys["AIART_S3_ACCESS_KEY"],
                                       secret_key=keys["AIART_S3_SECRET_KEY"]))
    yield client
    for model in models.names:  # the buckets these tests made
        anyio.run(client.remove_bucket, f"aiart-{model}")


def aiart(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "aiart.cli", *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"aiart {' '.join(args)} failed: {done.stderr}"
    return done


def manifest(name: str, uri: str, extra: str = "", spec: str = "") -> bytes:
    return (f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {name}, version: '1', "
            f"labels: {{suite: e2e}}}}\nspec:\n  runtime: sklearn\n"
            f"  artifact: {{uri: '{uri}'{extra}}}\n  auth: {{mode: none}}\n{spec}").encode()


def infer(gateway: httpx.Client, model: str) -> dict[str, Any]:
    response = gateway.post(f"/v2/models/{model}/infer", json=ROW)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_training_run_is_stored_deployed_and_recorded(
        models: Models, store: ObjectStore, gateway: httpx.Client, iris_pickle: bytes,
        tmp_path: Path) -> None:
    model = models.name("run")
    (tmp_path / "model.pkl").write_bytes(iris_pickle)
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.97}))
    (tmp_path / "params.json").write_text(json.dumps({"C": 1.0}))
    (tmp_path / "notes.txt").write_text("trained on iris")
    run_id = aiart("runs", "upload", model, str(tmp_path / "model.pkl"), "--metrics",
                   str(tmp_path / "metrics.json"), "--params", str(tmp_path / "params.json"),
                   "--file", f"docs/notes.txt={tmp_path / 'notes.txt'}").stdout.strip()
    assert run_id in aiart("runs", "ls", model).stdout

    models.config(f"{model}-1", manifest(model, f"run://{model}/{run_id}"),
                  **{"aiart.model": model})
    models.wait_status(f"{model}-1", "Ready")
    assert infer(gateway, model)["outputs"][0]["data"] == [0]

    bucket = f"aiart-{model}"
    expected = {f"runs/{run_id}/run.json", f"runs/{run_id}/model/model.pkl",
                f"runs/{run_id}/metrics.json", f"runs/{run_id}/params.json",
                f"runs/{run_id}/files/docs/notes.txt", "artifacts/1/model.pkl",
                "manifests/1.yaml"}
    wait_for(lambda: expected <= set(anyio.run(store.list, bucket)), 30,
             "the served version's artifact and manifest in the bucket")
    assert anyio.run(store.get, bucket, "artifacts/1/model.pkl") == iris_pickle

    [entry] = json.loads(aiart("models", "--name", model, "--json").stdout)
    assert (entry["runId"], entry["status"], entry["artifactUri"]) == (
        run_id, "Ready", f"run://{model}/{run_id}")
    assert entry["artifactSha256"] == hashlib.sha256(iris_pickle).hexdigest()
    assert "@sha256:" in entry["imageDigest"]
    assert entry["labels"] == {"suite": "e2e"}
    assert f"runs/{run_id}" not in entry["manifest"]  # the manifest as written
    history = aiart("history", model).stdout
    assert "Building" in history and "Ready" in history
    listed = aiart("models", "--label", "suite=e2e", "--status", "ready").stdout
    assert model in listed


def test_a_digest_mismatch_is_refused(models: Models, store: ObjectStore,
                                      iris_pickle: bytes) -> None:
    model = models.name("sha")
    anyio.run(store.ensure_bucket, f"aiart-{model}")
    anyio.run(lambda: store.put(f"aiart-{model}", "inputs/model.pkl", iris_pickle))
    wrong = "0" * 64
    models.config(f"{model}-1", manifest(model, f"s3://aiart-{model}/inputs/model.pkl",
                                         f", sha256: '{wrong}'"), **{"aiart.model": model})
    labels = models.wait_status(f"{model}-1", "Failed", 60)
    assert f"but the manifest expects {wrong}" in labels["aiart.status.message"]
    assert not models.services(model)


@pytest.mark.serial  # stops the store under every other test
def test_store_outage_stalls_only_what_needs_the_store_then_recovers(
        models: Models, store: ObjectStore, engine: docker.DockerClient, gateway: httpx.Client,
        iris_pickle: bytes) -> None:
    remote, local = models.name("remote"), models.name("local")
    anyio.run(store.ensure_bucket, f"aiart-{remote}")
    anyio.run(lambda: store.put(f"aiart-{remote}", "m.pkl", iris_pickle))
    [container] = engine.containers.list(
        filters={"label": f"com.docker.swarm.service.name={STACK}_store"})
    container.pause()  # a store that accepts connections and never answers
    try:
        models.config(f"{remote}-1", manifest(remote, f"s3://aiart-{remote}/m.pkl"),
                      **{"aiart.model": remote})
        models.declare(local, "1", iris_pickle)
        wait_for(lambda: "unreachable" in models.labels(f"{remote}-1").get(
            "aiart.status.message", ""), 90, "the model to say the store is unreachable")
        assert models.labels(f"{remote}-1")["aiart.status"] == "Pending"
        models.wait_status(f"{local}-1", "Ready", 120)
        infer(gateway, local)
    finally:
        container.unpause()
    models.wait_status(f"{remote}-1", "Ready", 120)
    infer(gateway, remote)


def test_a_model_that_asks_gets_keys_of_its_own_as_secrets(
        models: Models, engine: docker.DockerClient, iris_pickle: bytes) -> None:
    model = models.name("creds")
    models.declare(model, "1", iris_pickle, manifest_data=None, store="{credentials: true}")
    models.wait_status(f"{model}-1", "Ready")
    [service] = models.services(model)
    container_spec = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
    keys = store_keys()
    env = dict(item.split("=", 1) for item in container_spec["Env"])
    assert env["AIART_STORE_BUCKET"] == f"aiart-{model}"
    assert env["AIART_STORE_ENDPOINT"] == "store-gateway:9000"
    spec_text = json.dumps(service.attrs["Spec"])
    [container] = engine.containers.list(
        filters={"label": f"com.docker.swarm.service.name={service.name}"})
    code, access = container.exec_run(["cat", env["AIART_STORE_ACCESS_KEY_FILE"]])
    assert code == 0 and access.decode() == f"aiart-{model}"
    code, secret = container.exec_run(["cat", env["AIART_STORE_SECRET_KEY_FILE"]])
    assert code == 0 and len(secret) == 40 and secret.decode() not in spec_text
    # Never the store's own keys.
    assert keys["AIART_S3_SECRET_KEY"] != secret.decode()
    assert keys["AIART_S3_ACCESS_KEY"] != access.decode()
    # The model gone, so are its keys' secrets.
    secrets = [s["SecretName"] for s in container_spec["Secrets"]]
    for config in engine.configs.list(filters={"label": f"aiart.model={model}"}):
        config.remove()
    wait_for(lambda: not models.services(model), 60, f"{model}'s service to go")
    wait_for(lambda: not [s for s in engine.secrets.list() if s.name in secrets], 60,
             f"{model}'s key secrets to go")


METRICS = ("import urllib.request; print(urllib.request.urlopen("
           "'http://127.0.0.1:8080/metrics', timeout=5).read().decode())")


def test_payload_logs_hold_the_sampled_requests_whole_and_no_key(
        models: Models, store: ObjectStore, gateway: httpx.Client, iris_pickle: bytes,
        run_id: str) -> None:
    """spec.logging through the real stack: the model's servers write a
    sample of what callers sent and got to its bucket, through the store
    gateway with the model's own keys; the caller's key is nowhere in it."""
    from tests.runtime.test_runtime_server import metric_value
    from tests.security.test_model_network import _container

    model = models.name("payloads")
    config = models.declare(model, "1", iris_pickle, auth="{mode: apikey}",
                            logging="{sample: 0.5}")
    models.wait_status(config, "Ready")
    key_name = f"t{run_id}-payloads"
    key = aiart("keys", "create", key_name, "--model", model).stdout.strip()
    try:
        url = f"/v2/models/{model}/infer"
        wait_for(lambda: gateway.post(url, json=ROW, headers={"X-API-Key": key}
                                      ).status_code == 200, 15, "the key to open the model")
        sent: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for n in range(200):
            body = {"id": f"p-{n}", "inputs": [{"name": "input-0", "shape": [1, 4],
                                                 "datatype": "FP64",
                                                 "data": [4 + n % 4, 3.0, 1 + n % 5, 0.2]}]}
            answer = gateway.post(url, json=body, headers={"X-API-Key": key})
            assert answer.status_code == 200, answer.text
            sent[f"p-{n}"] = (body, answer.json())
    finally:
        subprocess.run([sys.executable, "-m", "aiart.cli", "keys", "revoke", key_name],
                       capture_output=True, timeout=60)
    bucket = f"aiart-{model}"
    container = _container(models.engine, model)

    def written() -> float:
        out = container.exec_run(["/opt/aiart/bin/python", "-c", METRICS]).output.decode()
        assert metric_value(out, "aiart_payload_records_total", outcome="dropped") == 0
        assert metric_value(out, "aiart_payload_records_total", outcome="failed") == 0
        return metric_value(out, "aiart_payload_records_total", outcome="written")

    def records() -> list[dict[str, Any]]:
        keys = [k for k in anyio.run(store.list, bucket, "payloads/") if k.endswith(".jsonl.gz")]
        lines = b"".join(gzip.decompress(anyio.run(store.get, bucket, k)) for k in keys)
        assert key.encode() not in lines
        return [json.loads(line) for line in lines.splitlines()]

    # Every record written (a batch goes within 5 s of its first record):
    # the count stands still for longer than that, and the bucket holds it.
    # The first warm-up calls are logged too (by the sample): only ours count below.
    last: dict[str, float] = {"count": -1.0, "since": time.monotonic()}

    def settled() -> list[dict[str, Any]] | None:
        count = written()
        if count != last["count"]:
            last.update(count=count, since=time.monotonic())
            return None
        if time.monotonic() - last["since"] < 7:
            return None
        found = records()
        return found if len(found) == count else None

    found = wait_for(settled, 90, "the payload log's records in the bucket")
    ours = [r for r in found if r.get("id", "").startswith("p-")]
    ids = [r["id"] for r in ours]
    assert len(ids) == len(set(ids)), "a request logged twice"
    # A fair coin over 200 requests: 100 +- 7 expected; these bounds fail
    # for a log that samples nothing, everything, or a wrong share.
    assert 55 < len(ours) < 145, len(ours)
    for entry in ours:
        body, answer = sent[entry["id"]]
        assert entry["request"]["json"] == body
        assert entry["response"]["json"] == answer
        assert (entry["status"], entry["endpoint"], entry["model"], entry["version"]) == (
            200, "infer", model, "1")
    assert all(k.startswith("payloads/") for k in anyio.run(store.list, bucket, "payloads/"))
