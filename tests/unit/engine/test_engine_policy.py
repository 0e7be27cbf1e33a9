"""The engine proxy's policy: what the auth service, the API, the gateway
and Prometheus may ask of the Docker Engine (operator/aiart/engine/policy.py). The proxy itself is
attacked through the real stack in tests/security/test_engine_proxy.py."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

import pytest
from aiart.auth.access import Role, new_key
from aiart.core.render import GATEWAY_HEADER
from aiart.engine.policy import (
    Client,
    command_update,
    decide,
    engine_path,
    may_read_logs,
    may_remove,
    rewritten,
    vanished,
)

AUTH, API, GATEWAY, MONITORING = Client.AUTH, Client.API, Client.GATEWAY, Client.MONITORING


def listed(path: str, *labels: str, other: dict[str, object] | None = None) -> str:
    """A list call as aiodocker sends it: filters as JSON in the query."""
    filters = {"label": list(labels), **(other or {})}
    return f"{path}?{urlencode({'filters': json.dumps(filters)})}"


def config(labels: dict[str, str]) -> bytes:
    return json.dumps({"Name": "x", "Labels": labels, "Data": ""}).encode()


@pytest.mark.parametrize(("client", "method", "path"), [
    (AUTH, "GET", "/v1.47/configs?filters=%7B%22label%22%3A%5B%22aiart.apikey%22%5D%7D"),
    (AUTH, "GET", "/version"),
    (AUTH, "HEAD", "/_ping"),
    (API, "GET", listed("/v1.47/configs", "aiart.model")),
    (API, "GET", listed("/v1.47/configs", "aiart.model=iris")),
    (API, "GET", listed("/v1.47/configs", "aiart.catalog.model=iris")),
    (API, "GET", "/v1.47/configs/iris-1"),
    (API, "GET", listed("/v1.47/services", "aiart.managed-by=aiart", "aiart.model=iris")),
    (API, "GET", "/v1.47/services/k2x9q/logs?stdout=1&tail=100"),
    (API, "DELETE", "/v1.47/configs/iris-1"),
])
def test_what_each_client_needs_is_allowed(client: Client, method: str, path: str) -> None:
    assert decide(client, method, path, b"").allowed


@pytest.mark.parametrize(("client", "method", "path"), [
    # Root on the node, by any road.
    (API, "POST", "/v1.47/containers/create"),
    (API, "POST", "/v1.47/services/create"),
    (API, "POST", "/v1.47/services/abc/update"),
    (API, "POST", "/v1.47/containers/abc/exec"),
    (API, "POST", "/v1.47/images/create"),
    (API, "POST", "/v1.47/build"),
    (API, "GET", "/v1.47/secrets"),
    (API, "POST", "/v1.47/swarm/leave"),
    (API, "GET", "/v1.47/containers/json"),
    # Paths that hide another path.
    (API, "GET", "/v1.47/configs/..%2Fcontainers%2Fjson"),
    (API, "GET", "/v1.47/configs/../containers/json"),
    (API, "GET", "/v1.47//containers/json"),
    (API, "GET", "/v1.47/services/a/logs/../../containers/json"),
    # Lists of everything: other stacks' configs and services' environments.
    (API, "GET", "/v1.47/configs"),
    (API, "GET", listed("/v1.47/configs", "team=a")),
    (API, "GET", "/v1.47/services"),
    (API, "GET", listed("/v1.47/services", "aiart.model=iris")),
    (API, "GET", listed("/v1.47/services", "aiart.managed-by=aiartx")),
    (AUTH, "GET", listed("/v1.47/configs", "aiart.model")),
    (AUTH, "GET", "/v1.47/configs?filters=not-json"),
    # The auth service reads the key records and nothing else.
    (AUTH, "GET", "/v1.47/services"),
    (AUTH, "GET", "/v1.47/configs/aiart-apikey-1"),
    (AUTH, "DELETE", "/v1.47/configs/iris-1"),
    (AUTH, "POST", "/v1.47/configs/create"),
])
def test_everything_else_is_refused(client: Client, method: str, path: str) -> None:
    verdict = decide(client, method, path, config({"aiart.model": "iris"}))
    assert not verdict.allowed and verdict.reason


def test_the_api_creates_deployment_configs_only() -> None:
    ok = [{"aiart.model": "iris", "aiart.created-by": "apikey:ci"},
          {"aiart.artifact-of": "iris", "aiart.version": "1", "aiart.managed-by": "aiart"},
          {"aiart.job": "iris-1", "aiart.job.model": "iris", "aiart.created-by": "apikey:ci"}]
    for labels in ok:
        assert decide(API, "POST", "/v1.47/configs/create", config(labels)).allowed, labels
    refused = {
        "a key record": {"aiart.model": "iris", "aiart.apikey": "k1",
                         "aiart.apikey.role": "admin"},
        "a trusted package key on a version": {"aiart.model": "iris",
                                               "aiart.package-key": "0879e184aca1564c",
                                               "aiart.package-key.name": "evil"},
        "a trusted package key": {"aiart.package-key": "0879e184aca1564c"},
        "no deployment label": {"aiart.managed-by": "aiart"},
        "a foreign label": {"aiart.model": "iris", "com.example.run-as": "root"},
        "no labels": {},
    }
    for what, labels in refused.items():
        verdict = decide(API, "POST", "/v1.47/configs/create", config(labels))
        assert not verdict.allowed, what
    for body in (b"not json", b"[]", json.dumps({"Labels": ["aiart.model"]}).encode()):
        assert not decide(API, "POST", "/v1.47/configs/create", body).allowed, body


def test_the_api_removes_deployment_configs_only() -> None:
    verdict = decide(API, "DELETE", "/v1.47/configs/iris-1", b"")
    assert verdict.allowed and verdict.config == "iris-1"  # once its labels are read:
    assert may_remove({"aiart.model": "iris", "team": "a"}).allowed
    assert may_remove({"aiart.artifact-of": "iris"}).allowed
    assert may_remove({"aiart.job": "iris-1", "aiart.job.model": "iris"}).allowed
    assert not may_remove({"aiart.apikey": "k1", "aiart.model": "iris"}).allowed
    assert not may_remove({"aiart.managed-by": "aiart"}).allowed
    assert not may_remove({}).allowed


def key_record(role: str = "deployer", **changes: Any) -> dict[str, Any]:
    """A key record's creation as auth/keystore.py sends it (``changes``:
    fields of its data to change, or ``name``/``labels`` of the config)."""
    _, record = new_key("line-3", Role(role) if role in ("viewer", "deployer", "admin")
                        else Role.VIEWER, ["iris"])
    data = json.loads(record.to_json())
    data.update({k: v for k, v in changes.items() if k not in ("name", "labels")})
    if role not in ("viewer", "deployer", "admin"):
        data["role"] = role
    labels = changes.get("labels") or {"aiart.apikey": record.id,
                                       "aiart.apikey.name": record.name,
                                       "aiart.apikey.role": record.role.value}
    return {"Name": changes.get("name", f"aiart-apikey-{record.id}"),
            "Data": base64.b64encode(json.dumps(data).encode()).decode(), "Labels": labels}


def test_the_api_writes_viewers_and_deployers_key_records_only() -> None:
    def create(spec: dict[str, Any]) -> bool:
        return decide(API, "POST", "/v1.47/configs/create", json.dumps(spec).encode()).allowed
    assert create(key_record("deployer")) and create(key_record("viewer"))
    for client in (AUTH, GATEWAY, MONITORING):
        assert not decide(client, "POST", "/v1.47/configs/create",
                          json.dumps(key_record()).encode()).allowed
    deployer = key_record("deployer")
    refused = {
        "an admin's": key_record("admin"),
        "a role of its own": key_record("root"),
        "labels saying deployer, data admin": {**deployer, "Data": base64.b64encode(
            json.dumps({**json.loads(base64.b64decode(deployer["Data"])),
                        "role": "admin"}).encode()).decode()},
        "another name": key_record(name="aiart-apikey-000000000000"),
        "a model label beside": key_record(labels={**deployer["Labels"], "aiart.model": "x"}),
        "a label missing": key_record(labels={"aiart.apikey": "x"}),
        "a field more": key_record(extra="x"),
        "not a digest": key_record(sha256="zz"),
        "an id a path could hide in": key_record(id="../containers"),
        "data not base64": {**deployer, "Data": "not base64!"},
    }
    for what, spec in refused.items():
        assert not create(spec), what
        reason = decide(API, "POST", "/v1.47/configs/create", json.dumps(spec).encode()).reason
        assert "key record" in reason, (what, reason)


def test_the_api_removes_viewers_and_deployers_key_records_only() -> None:
    assert may_remove({"aiart.apikey": "k1", "aiart.apikey.name": "a",
                       "aiart.apikey.role": "deployer"}).allowed
    assert may_remove({"aiart.apikey": "k1", "aiart.apikey.role": "viewer"}).allowed
    admin = may_remove({"aiart.apikey": "k1", "aiart.apikey.role": "admin"})
    assert not admin.allowed and "on a manager" in admin.reason
    assert not may_remove({"aiart.apikey": "k1"}).allowed
    assert not may_remove({"aiart.apikey": "k1", "aiart.apikey.role": "deployer",
                           "aiart.model": "iris"}).allowed


def test_the_api_changes_the_rollout_command_of_a_model_version_and_nothing_else() -> None:
    verdict = decide(API, "POST", "/v1.47/configs/abc/update?version=3", b"{}")
    assert verdict.allowed and verdict.update and verdict.config == "abc"
    for client in (AUTH, GATEWAY, MONITORING):
        assert not decide(client, "POST", "/v1.47/configs/abc/update", b"{}").allowed
    now = {"Name": "iris-2", "Data": "bWFuaWZlc3Q=", "Labels": {
        "aiart.model": "iris", "aiart.status": "Ready", "aiart.rollout.phase": "Progressing"}}

    def asked(labels: dict[str, str], data: str = "") -> tuple[bool, dict[str, Any]]:
        verdict, body = command_update(now, json.dumps(
            {"Name": "other", "Labels": labels, "Data": data}).encode())
        return verdict.allowed, json.loads(body) if body else {}

    allowed, sent = asked({**now["Labels"], "aiart.rollout.command": "promote"}, data="ZXZpbA==")
    # The config as it is (its name, its data: never the caller's), one label added.
    assert allowed and sent == {"Name": "iris-2", "Data": "bWFuaWZlc3Q=", "Labels": {
        **now["Labels"], "aiart.rollout.command": "promote"}}
    assert asked({**now["Labels"], "aiart.rollout.command": "abort"})[0]
    refused = {
        "another command": {**now["Labels"], "aiart.rollout.command": "rm -rf"},
        "its status": {**now["Labels"], "aiart.status": "Failed",
                       "aiart.rollout.command": "abort"},
        "its rollout's state": {**now["Labels"], "aiart.rollout.phase": "Promoted"},
        "its model": {**now["Labels"], "aiart.model": "wine"},
        "a label removed": {"aiart.model": "iris", "aiart.rollout.phase": "Progressing"},
        "a label added": {**now["Labels"], "team": "a"},
    }
    for what, labels in refused.items():
        assert not asked(labels)[0], what
    for body in (b"not json", b"[]", json.dumps({"Labels": {"a": 1}}).encode()):
        assert not command_update(now, body)[0].allowed, body
    # Only a model version's config: not a key record, not an artifact.
    for labels in ({"aiart.apikey": "k1", "aiart.model": "iris"}, {"aiart.artifact-of": "iris"}):
        record = {**now, "Labels": labels}
        verdict, _ = command_update(record, json.dumps(
            {"Labels": {**labels, "aiart.rollout.command": "abort"}}).encode())
        assert not verdict.allowed, labels


def test_a_config_read_alone_comes_back_without_its_data() -> None:
    assert decide(API, "GET", "/v1.47/configs/iris-model-1", b"").rewrite
    assert not decide(API, "GET", listed("/v1.47/configs", "aiart.model"), b"").rewrite
    config = {"ID": "c1", "Spec": {"Name": "iris-model-1", "Labels": {"aiart.model": "iris"},
                                   "Data": "c2VjcmV0"}}
    assert rewritten("/configs/c1", config, API) == {
        "ID": "c1", "Spec": {"Name": "iris-model-1", "Labels": {"aiart.model": "iris"}}}


@pytest.mark.parametrize("client", [GATEWAY, MONITORING])
def test_the_watchers_read_the_swarm_and_write_nothing(client: Client) -> None:
    for path in ("/v1.47/services", "/v1.47/services?status=true", "/v1.47/tasks?filters="
                 + quote(json.dumps({"service": ["x"], "desired-state": ["running"]})),
                 "/v1.47/networks", "/v1.47/networks/aiart-models", "/v1.47/nodes",
                 "/v1.47/nodes/xioly36ew61vgo0gziw7d4e71",
                 "/v1.47/version", "/_ping"):
        assert decide(client, "GET", path, b"").allowed, path
    for method, path in [("POST", "/v1.47/containers/create"), ("POST", "/v1.47/services/create"),
                         ("POST", "/v1.47/services/x/update"), ("DELETE", "/v1.47/services/x"),
                         ("POST", "/v1.47/networks/create"), ("GET", "/v1.47/secrets"),
                         ("GET", "/v1.47/configs"), ("GET", "/v1.47/containers/json"),
                         ("POST", "/v1.47/containers/x/exec"), ("GET", "/v1.47/services/x/logs"),
                         ("POST", "/v1.47/nodes/x/update"), ("GET", "/v1.47/swarm")]:
        assert not decide(client, method, path, b"{}").allowed, (method, path)
    assert decide(client, "GET", "/v1.47/services", b"").rewrite
    assert decide(client, "GET", "/v1.47/tasks", b"").rewrite
    assert not decide(client, "GET", "/v1.47/nodes", b"").rewrite


def test_the_watchers_see_services_and_tasks_without_their_environment() -> None:
    container = {"Image": "m@sha256:1", "Env": ["AWS_SECRET_ACCESS_KEY=s"], "Labels": {"a": "b"}}
    service = {"ID": "s1", "Spec": {"Labels": {"aiart.model": "iris"},
                                    "TaskTemplate": {"ContainerSpec": dict(container)}},
               "PreviousSpec": {"TaskTemplate": {"ContainerSpec": dict(container)}}}
    task = {"ID": "t1", "Spec": {"ContainerSpec": dict(container)}, "Status": {"State": "running"}}
    shown = rewritten("/services", [service], GATEWAY) + rewritten("/tasks", [task], GATEWAY)
    assert "AWS_SECRET_ACCESS_KEY" not in json.dumps(shown)
    assert shown[0]["Spec"]["TaskTemplate"]["ContainerSpec"] == {
        "Image": "m@sha256:1", "Labels": {"a": "b"}}
    assert shown[1]["Spec"]["ContainerSpec"]["Image"] == "m@sha256:1"
    assert shown[1]["Status"] == {"State": "running"}


def test_only_the_gateway_sees_the_route_label_with_a_models_gateway_token() -> None:
    token = f"traefik.http.middlewares.m_1_nocred.headers.customrequestheaders.{GATEWAY_HEADER}"
    labels = {"aiart.model": "m", token: "f00d", "traefik.enable": "true"}

    def service() -> dict[str, Any]:
        return {"ID": "s1", "Spec": {"Labels": dict(labels)},
                "PreviousSpec": {"Labels": dict(labels)}}

    (seen,) = rewritten("/services", [service()], GATEWAY)
    assert seen["Spec"]["Labels"] == labels
    (seen,) = rewritten("/services", [service()], MONITORING)
    assert "f00d" not in json.dumps(seen)
    assert seen["Spec"]["Labels"] == seen["PreviousSpec"]["Labels"] == {
        "aiart.model": "m", "traefik.enable": "true"}


def test_the_api_reads_the_logs_of_model_services_only() -> None:
    verdict = decide(API, "GET", "/v1.47/services/k2x9q/logs?tail=10", b"")
    assert verdict.allowed and verdict.service == "k2x9q"  # once its labels are read:
    assert may_read_logs({"aiart.model": "iris", "aiart.version": "1"}).allowed
    assert not may_read_logs({"aiart.role": "operator", "aiart.managed-by": "aiart"}).allowed
    assert not may_read_logs({}).allowed


def test_label_filters_may_come_as_a_mapping() -> None:
    assert decide(API, "GET", "/v1.47/services?" + urlencode({"filters": json.dumps(
        {"label": {"aiart.managed-by=aiart": True}})}), b"").allowed
    assert not decide(API, "GET", "/v1.47/services?" + urlencode({"filters": json.dumps(
        {"label": {"aiart.managed-by=aiart": False}})}), b"").allowed


def test_engine_path_drops_the_version_and_refuses_hidden_parts() -> None:
    assert engine_path("/v1.47/configs?x=1") == "/configs"
    assert engine_path("/_ping") == "/_ping"
    for raw in ("/v1.47/configs/%2e%2e/x", "/v1.47//x", "/v1.47/a/../b", "/v1.47/a/.."):
        assert engine_path(raw) is None, raw


def test_the_tasks_of_a_service_gone_since_are_none_not_an_error() -> None:
    # The engine's 404 for a task listing filtered by a removed service.
    assert vanished("/tasks", 404)
    assert not vanished("/tasks", 500) and not vanished("/tasks", 200)
    assert not vanished("/services", 404)
    assert not vanished("/configs/x", 404)


def sent_filters(path: str) -> tuple[str, dict[str, list[str]], dict[str, object]]:
    """The path the engine is sent for ``path``, its other parameters and its filters."""
    head, _, query = path.partition("?")
    params = parse_qs(query)
    filters = json.loads(params.pop("filters", ["{}"])[0])
    return head, params, filters


@pytest.mark.parametrize("asked", [
    "/v1.41/services",
    "/v1.41/services?status=true",
    listed("/v1.41/services", "team=a", other={"mode": ["replicated"]}),
    "/v1.41/services?" + urlencode({"filters": json.dumps({"label": {"team=a": True}})}),
])
def test_the_gateway_lists_only_the_services_it_may_route(asked: str) -> None:
    # Traefik reads every service each second, then each one's tasks; the
    # engine is asked for the routed ones only (exposedByDefault=false).
    verdict = decide(GATEWAY, "GET", asked, b"")
    assert verdict.allowed and verdict.rewrite and verdict.path is not None
    head, params, filters = sent_filters(verdict.path)
    _, asked_params, asked_filters = sent_filters(asked)
    assert head == "/v1.41/services" and params == asked_params
    labels = asked_filters.get("label", [])
    assert filters["label"] == [*(labels if isinstance(labels, list) else list(labels)),
                                "traefik.enable=true"]
    assert {k: v for k, v in filters.items() if k != "label"} == {
        k: v for k, v in asked_filters.items() if k != "label"}
    # Its other reads, and Prometheus's (it watches every service), go as asked.
    for client, path in ((GATEWAY, "/v1.41/tasks"), (GATEWAY, "/v1.41/networks"),
                         (MONITORING, asked)):
        other = decide(client, "GET", path, b"")
        assert other.allowed and other.path is None, (client, path)


def test_the_gateway_s_list_with_filters_the_engine_cannot_read_is_refused() -> None:
    for filters in ("[1]", "{\"label\": [1]}", "not json"):
        verdict = decide(GATEWAY, "GET", "/v1.41/services?" + urlencode({"filters": filters}),
                         b"")
        assert not verdict.allowed and "filters" in verdict.reason, filters
