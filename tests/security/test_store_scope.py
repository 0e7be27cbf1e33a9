"""A model reaches its own bucket only, with keys of its own.

Against the real stack: two models ask for the store; with the first one's
keys (read from its container, as its code would), a client on the model
network (the operator's image, which has MinIO's SDK) tries what the code
inside a model could try. The store itself is on no network a model is on;
the store gateway lets the model read its bucket and write its results, and
nothing else. (The development store, moto, takes any key: what holds here
is the gateway, as it would in front of MinIO.)"""

from __future__ import annotations

import json

import anyio
import docker
from aiart.store.client import ObjectStore, StoreSettings

from tests.e2e.conftest import STACK, TEST_LABEL, Models, wait_for
from tests.e2e.test_object_store import store_keys
from tests.security.test_model_network import _container

ATTACK = r"""
import io, json, sys
from minio import Minio
from minio.error import S3Error
own, other, access, secret = sys.argv[1:5]
model = Minio("store-gateway:9000", access, secret, secure=False)
out = {}
def attempt(name, call):
    try:
        out[name] = call()
    except S3Error as exc:
        out[name] = exc.code
    except Exception as exc:
        out[name] = type(exc).__name__
def put(client, bucket, key):
    client.put_object(bucket, key, io.BytesIO(b"evil"), 4)
    return "written"
def get(client, bucket, key):
    return client.get_object(bucket, key).read().decode(errors="replace")
attempt("write own result", lambda: put(model, own, "predictions/x.json"))
attempt("read own result", lambda: get(model, own, "predictions/x.json"))
attempt("read own manifest", lambda: get(model, own, "manifests/1.yaml")[:20])
attempt("read other manifest", lambda: get(model, other, "manifests/1.yaml")[:20])
attempt("list other", lambda: [o.object_name for o in model.list_objects(other)])
attempt("overwrite other artifact", lambda: put(model, other, "artifacts/1/model.pkl"))
attempt("overwrite own artifact", lambda: put(model, own, "artifacts/1/model.pkl"))
attempt("list buckets", lambda: [b.name for b in model.list_buckets()])
attempt("forged secret", lambda: get(Minio("store-gateway:9000", access, "x" * 40, secure=False),
                                     own, "manifests/1.yaml"))
for host in ("store:9000", sys.argv[5] + "_store:9000"):
    attempt(host, lambda: [b.name for b in Minio(host, access, secret, secure=False).list_buckets()])
print(json.dumps(out))
"""


def test_a_model_reaches_its_own_bucket_only(models: Models, iris_pickle: bytes) -> None:
    engine = models.engine
    attacker, victim = models.name("s3-attacker"), models.name("s3-victim")
    for model in (attacker, victim):
        models.declare(model, "1", iris_pickle, store="{credentials: true}")
    keys = store_keys()
    root = ObjectStore(StoreSettings(endpoint=keys["AIART_S3_ENDPOINT"],
                                     access_key=keys["AIART_S3_ACCESS_KEY"],
                                     secret_key=keys["AIART_S3_SECRET_KEY"]))
    for model in (attacker, victim):
        models.wait_status(f"{model}-1", "Ready")
        # The operator archives the manifest and artifact once the version runs.
        wait_for(lambda m=model: {"manifests/1.yaml", "artifacts/1/model.pkl"} <= set(
            anyio.run(root.list, f"aiart-{m}")), 60, f"{model}'s archive")
    inside = _container(engine, attacker)
    access = inside.exec_run(["cat", "/run/secrets/aiart-store-access-key"]).output.decode()
    secret = inside.exec_run(["cat", "/run/secrets/aiart-store-secret-key"]).output.decode()
    image = engine.services.get(f"{STACK}_operator").attrs["Spec"]["TaskTemplate"][
        "ContainerSpec"]["Image"]
    try:
        output = engine.containers.run(
            image, ["/opt/aiart/bin/python", "-c", ATTACK, f"aiart-{attacker}",
                    f"aiart-{victim}", access, secret, STACK],
            entrypoint=[], network="aiart-models", remove=True,
            labels={TEST_LABEL: models.run_id})
    except docker.errors.ContainerError as exc:
        raise AssertionError(exc.stderr) from exc
    seen = json.loads(output.decode().strip().splitlines()[-1])
    assert seen["write own result"] == "written", seen
    assert seen["read own result"] == "evil", seen
    assert seen["read own manifest"].startswith("apiVersion"), seen
    for attack in ("read other manifest", "list other", "overwrite other artifact",
                   "overwrite own artifact", "list buckets"):
        assert seen[attack] == "AccessDenied", (attack, seen)
    assert seen["forged secret"] == "SignatureDoesNotMatch", seen
    # The store is on no network of the model's: its name does not resolve
    # there (a connection error, not an answer).
    for host in ("store:9000", f"{STACK}_store:9000"):
        assert isinstance(seen[host], str) and seen[host].endswith("Error"), (host, seen)
    # What the victim's bucket holds is as aiart archived it.
    assert anyio.run(root.get, f"aiart-{victim}", "artifacts/1/model.pkl") == iris_pickle
    for model in (attacker, victim):
        anyio.run(root.remove_bucket, f"aiart-{model}")
