"""The auth service, the API, the gateway and Prometheus hold no socket of
the engine's.

From inside their containers on the real stack (as code that took one over
would act): the engine proxy refuses everything that would make the caller
root on the node (a container with the host's disk, a service, exec, the
swarm's secrets) and every config write their work does not need (a key
record, another's config removed), while the reads their work needs pass.
The gateway's and Prometheus's images have no interpreter, so their calls
come from a container given the same volume, which is all either holds."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import docker
import pytest
from aiart.auth.access import Role, new_key
from aiart.core import packages as P
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.e2e.conftest import STACK, Models, aiart, wait_for

pytestmark = pytest.mark.e2e

CALLS = r"""
import http.client, json, os, socket, sys

class Engine(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect("/run/aiart-engine/docker.sock")

out = {"engine socket": os.path.exists("/var/run/docker.sock")}
for name, method, path, body in json.loads(sys.argv[1]):
    connection = Engine("localhost", timeout=10)
    connection.request(method, path, body=None if body is None else json.dumps(body),
                       headers={"Content-Type": "application/json"})
    answer = connection.getresponse()
    out[name] = [answer.status, answer.read().decode(errors="replace")[:4000]]
print(json.dumps(out))
"""


def record(role: Role, data_role: str | None = None) -> dict[str, Any]:
    """A key record's creation as the API sends it (``data_role``: the role
    its data claims, where it differs from its labels')."""
    _, key = new_key(f"proxy-{role.value}", role, [])
    data = json.loads(key.to_json())
    data["role"] = data_role or data["role"]
    return {"Name": f"aiart-apikey-{key.id}",
            "Data": base64.b64encode(json.dumps(data).encode()).decode(),
            "Labels": {"aiart.apikey": key.id, "aiart.apikey.name": key.name,
                       "aiart.apikey.role": role.value}}


def _filtered(path: str, label: str) -> str:
    return f"{path}?filters={quote(json.dumps({'label': [label]}))}"


def _inside(engine: docker.DockerClient, service: str, calls: list[Any]) -> dict[str, Any]:
    found = engine.containers.list(
        filters={"label": f"com.docker.swarm.service.name={STACK}_{service}"})
    assert found, f"no running container of {STACK}_{service} on this node"
    done = found[0].exec_run(["/opt/aiart/bin/python", "-c", CALLS, json.dumps(calls)])
    assert done.exit_code == 0, done.output
    return json.loads(done.output.decode().strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_no_service_facing_the_network_mounts_the_engines_socket(
        engine: docker.DockerClient) -> None:
    for name in ("api", "auth", "traefik", "prometheus"):
        spec = engine.services.get(f"{STACK}_{name}").attrs["Spec"]
        mounts = spec["TaskTemplate"]["ContainerSpec"].get("Mounts") or []
        assert not [m for m in mounts if "docker.sock" in m.get("Source", "")], (name, mounts)


def test_a_taken_over_api_cannot_become_root_or_touch_what_is_not_a_deployment(
        engine: docker.DockerClient, models: Models) -> None:
    image = engine.services.get(f"{STACK}_api").attrs["Spec"]["TaskTemplate"][
        "ContainerSpec"]["Image"]
    bystander = models.config(f"t{models.run_id}-bystander", b"not a model")
    operator = engine.services.get(f"{STACK}_operator").id
    key = {"Name": f"t{models.run_id}-forged-key", "Data": "",
           "Labels": {"aiart.model": "x", "aiart.apikey": "forged", "aiart.apikey.role": "admin"}}
    # A key to sign model packages with, made trusted by the swarm: a
    # version's config that also carries the trusted key's labels and data.
    evil = Ed25519PrivateKey.generate().public_key()
    evil_id = P.key_id(evil)
    package_key = {"Name": f"aiart-package-key-{evil_id}",
                   "Data": base64.b64encode(evil.public_bytes(
                       Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)).decode(),
                   "Labels": {"aiart.model": models.name("pkgkey"), "aiart.package-key": evil_id,
                              "aiart.package-key.name": "evil"}}
    # Key records as the dashboard's keys page writes them: a deployer's it
    # may write and remove; an admin's, well formed or disguised, it may not.
    deployer, admin = record(Role.DEPLOYER), record(Role.ADMIN)
    disguised = record(Role.DEPLOYER, data_role="admin")
    made_admin = json.loads(aiart("keys", "create", f"t{models.run_id}-proxy-admin",
                                  "--role", "admin", "--json"))
    # A model version's config: the API may set its rollout's command, nothing else.
    version = models.config(f"t{models.run_id}-victim-1", b"apiVersion: aiart/v1\n",
                            **{"aiart.model": f"t{models.run_id}-victim"})
    # The operator writes its status on it first (Invalid); then it stays put.
    wait_for(lambda: engine.configs.get(version.id).attrs["Spec"]["Labels"].get("aiart.status"),
             60, "the operator to judge the config")
    version = engine.configs.get(version.id)
    index = version.attrs["Version"]["Index"]
    labels = dict(version.attrs["Spec"]["Labels"])

    def update(new_labels: dict[str, str], data: str = "") -> list[Any]:
        return ["POST", f"/v1.41/configs/{version.id}/update?version={index}",
                {"Name": version.name, "Data": data, "Labels": new_labels}]
    seen = _inside(engine, "api", [
        ["host disk", "POST", "/v1.41/containers/create",
         {"Image": image, "Cmd": ["id"], "HostConfig": {"Binds": ["/:/host"], "Privileged": True}}],
        ["service", "POST", "/v1.41/services/create",
         {"Name": "escape", "TaskTemplate": {"ContainerSpec": {"Image": image}}}],
        ["exec", "POST", "/v1.41/containers/x/exec", {"Cmd": ["sh"]}],
        ["secrets", "GET", "/v1.41/secrets", None],
        ["containers", "GET", "/v1.41/containers/json", None],
        ["hidden path", "GET", "/v1.41/configs/..%2Fcontainers%2Fjson", None],
        ["key record", "POST", "/v1.41/configs/create", key],
        ["a trusted package key", "POST", "/v1.41/configs/create", package_key],
        ["an admin's key record", "POST", "/v1.41/configs/create", admin],
        ["a deployer's label on an admin's record", "POST", "/v1.41/configs/create", disguised],
        ["a deployer's key record", "POST", "/v1.41/configs/create", deployer],
        ["the deployer's record removed", "DELETE", f"/v1.41/configs/{deployer['Name']}", None],
        ["an admin's record removed", "DELETE",
         f"/v1.41/configs/aiart-apikey-{made_admin['id']}", None],
        ["bystander", "DELETE", f"/v1.41/configs/{bystander.id}", None],
        ["every config", "GET", "/v1.41/configs", None],
        ["every service", "GET", "/v1.41/services", None],
        ["operator's logs", "GET", f"/v1.41/services/{operator}/logs?stdout=1", None],
        ["configs", "GET", _filtered("/v1.41/configs", "aiart.model"), None],
        ["bystander's data", "GET", f"/v1.41/configs/{bystander.id}", None],
        ["services", "GET", _filtered("/v1.41/services", "aiart.managed-by=aiart"), None],
        ["its status", *update({**labels, "aiart.status": "Ready"})],
        ["its rollout", *update({**labels, "aiart.rollout.phase": "Promoted"})],
        ["a label of its own", *update({**labels, "com.example.owner": "me"})],
        ["bystander's labels", "POST", f"/v1.41/configs/{bystander.id}/update?version=1",
         {"Name": bystander.name, "Data": "", "Labels": {"aiart.rollout.command": "abort"}}],
        ["a command, and data", *update({**labels, "aiart.rollout.command": "abort"},
                                       data="ZXZpbA==")],
    ])
    assert seen["engine socket"] is False
    for call in ("host disk", "service", "exec", "secrets", "containers", "hidden path",
                 "key record", "a trusted package key", "an admin's key record", "a deployer's label on an admin's record",
                 "an admin's record removed", "bystander", "every config", "every service", "operator's logs",
                 "its status", "its rollout", "a label of its own", "bystander's labels"):
        status, text = seen[call]
        assert status == 403 and "engine proxy" in text, (call, seen[call])
    assert seen["configs"][0] == seen["services"][0] == 200, seen
    # A config named to it comes back with its labels, not its data.
    status, text = seen["bystander's data"]
    assert status == 200 and bystander.id in text and '"Data"' not in text, text
    # The one update it may make, with the config's own data kept, whatever it sent.
    assert seen["a command, and data"][0] == 200, seen["a command, and data"]
    victim = engine.configs.get(version.id)
    assert victim.attrs["Spec"]["Labels"] == {**labels, "aiart.rollout.command": "abort"}
    assert victim.attrs["Spec"]["Data"] == version.attrs["Spec"]["Data"]
    engine.configs.get(bystander.id)  # still there
    assert not engine.configs.list(filters={"name": key["Name"]})
    assert not engine.configs.list(filters={"name": package_key["Name"]})
    assert seen["a deployer's key record"][0] == 201, seen["a deployer's key record"]
    assert seen["the deployer's record removed"][0] == 204, seen["the deployer's record removed"]
    for made in (admin, disguised, deployer):
        assert not engine.configs.list(filters={"name": made["Name"]}), made["Name"]
    assert engine.configs.list(filters={"name": f"aiart-apikey-{made_admin['id']}"})
    aiart("keys", "revoke", made_admin["id"])
    assert not [s for s in engine.services.list() if s.name == "escape"]


def test_a_taken_over_auth_service_reads_key_records_only(engine: docker.DockerClient) -> None:
    seen = _inside(engine, "auth", [
        ["create", "POST", "/v1.41/configs/create",
         {"Name": "forged", "Data": "", "Labels": {"aiart.model": "x"}}],
        ["services", "GET", "/v1.41/services", None],
        ["containers", "GET", "/v1.41/containers/json", None],
        ["every config", "GET", "/v1.41/configs", None],
        ["configs", "GET", _filtered("/v1.41/configs", "aiart.apikey"), None],
    ])
    assert seen["engine socket"] is False
    for call in ("create", "services", "containers", "every config"):
        assert seen[call][0] == 403, (call, seen[call])
    assert seen["configs"][0] == 200, seen


def _gateway_token_holders(engine: docker.DockerClient) -> list[str]:
    return [s.name for s in engine.services.list(filters={"label": "aiart.model"})
            if any(k.endswith(".customrequestheaders.X-Aiart-Gateway") and v
                   for k, v in s.attrs["Spec"]["Labels"].items())]


@pytest.mark.parametrize(("service", "volume"), [("traefik", "engine-gateway"),
                                                 ("prometheus", "engine-monitoring")])
def test_a_taken_over_gateway_or_prometheus_reads_the_swarm_without_secrets(
        engine: docker.DockerClient, models: Models, iris_pickle: bytes, service: str,
        volume: str) -> None:
    if service == "prometheus" and not _gateway_token_holders(engine):
        # A model server's route with its token, for Prometheus not to see.
        models.wait_status(models.declare(models.name("token"), "1", iris_pickle), "Ready")
        assert _gateway_token_holders(engine)
    spec = engine.services.get(f"{STACK}_{service}").attrs["Spec"]["TaskTemplate"]
    mounts = spec["ContainerSpec"].get("Mounts") or []
    assert [m for m in mounts if m.get("Source") == f"{STACK}_{volume}"
            and m.get("Target") == "/run/aiart-engine"], mounts
    image = engine.services.get(f"{STACK}_api").attrs["Spec"]["TaskTemplate"][
        "ContainerSpec"]["Image"]
    operator = engine.services.get(f"{STACK}_operator").id
    version = engine.services.get(operator).attrs["Version"]["Index"]
    calls = [
        ["host disk", "POST", "/v1.41/containers/create",
         {"Image": image, "Cmd": ["id"], "HostConfig": {"Binds": ["/:/host"], "Privileged": True}}],
        ["service", "POST", "/v1.41/services/create",
         {"Name": "escape", "TaskTemplate": {"ContainerSpec": {"Image": image}}}],
        ["operator replaced", "POST", f"/v1.41/services/{operator}/update?version=1",
         {"TaskTemplate": {"ContainerSpec": {"Image": image}}}],
        ["exec", "POST", "/v1.41/containers/x/exec", {"Cmd": ["sh"]}],
        ["secrets", "GET", "/v1.41/secrets", None],
        ["configs", "GET", "/v1.41/configs", None],
        ["operator's logs", "GET", f"/v1.41/services/{operator}/logs?stdout=1", None],
        ["services", "GET", "/v1.41/services", None],
        ["tasks", "GET", "/v1.41/tasks", None],
        ["networks", "GET", "/v1.41/networks", None],
        ["nodes", "GET", "/v1.41/nodes", None],
        # A service removed between the gateway's listing of services and
        # of its tasks: none, not an error that fails the gateway's read.
        ["tasks of a gone service", "GET", "/v1.41/tasks?filters=" + quote(json.dumps(
            {"service": ["aiart-test-gone"], "desired-state": ["running"]})), None],
    ]
    # The whole answers are looked at inside (the services' list is long):
    # an environment anywhere in them, and the operator's settings by name.
    script = CALLS.replace(
        "answer.read().decode(errors=\"replace\")[:4000]",
        "(lambda text: {'Env': '\"Env\"' in text, 'AIART_': 'AIART_' in text,"
        " 'token': 'X-Aiart-Gateway' in text,"
        " 'operator': " + repr(operator) + " in text, 'text': text[:300]})"
        "(answer.read().decode(errors=\"replace\"))")
    assert script != CALLS
    output = engine.containers.run(
        image, ["/opt/aiart/bin/python", "-c", script, json.dumps(calls)], remove=True,
        entrypoint=[], volumes={f"{STACK}_{volume}": {"bind": "/run/aiart-engine", "mode": "rw"}},
        labels={"aiart.test": "engine-proxy"}, network_mode="none")
    seen = json.loads(output.decode().strip().splitlines()[-1])
    for call in ("host disk", "service", "operator replaced", "exec", "secrets", "configs",
                 "operator's logs"):
        status, answer = seen[call]
        assert status == 403 and "engine proxy" in answer["text"], (call, seen[call])
    for call in ("services", "tasks", "networks", "nodes", "tasks of a gone service"):
        assert seen[call][0] == 200, (call, seen[call])
    assert seen["tasks of a gone service"][1]["text"] == "[]", seen["tasks of a gone service"]
    # What it reads names the operator's service (its tasks; for Prometheus,
    # the service too), not its settings. The gateway's list of services
    # holds only those it routes (engine/policy.py): not the operator's.
    assert seen["tasks"][1]["operator"], seen
    assert seen["services"][1]["operator"] is (service == "prometheus"), seen["services"]
    for call in ("services", "tasks"):
        assert not seen[call][1]["Env"] and not seen[call][1]["AIART_"], (call, seen[call])
    if service == "prometheus":
        # Nor the route label that hands each model server its gateway token
        # (Prometheus is on the model network): only the gateway reads those.
        assert not seen["services"][1]["token"], seen["services"]
    assert engine.services.get(operator).attrs["Version"]["Index"] == version
    assert not [s for s in engine.services.list() if s.name == "escape"]
