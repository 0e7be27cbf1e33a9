"""The renderer: golden service specs and route tables."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import aiohttp
import pytest
from aiart.control.prober import Gateway
from aiart.core import labels as L
from aiart.core.render import (
    DRAIN_LIMIT_SECONDS,
    GATEWAY_HEADER,
    Guard,
    carries_current_route,
    guard_labels,
    model_settings,
    render_service,
    route_labels,
    spec_hash,
    task_template_hash,
)
from aiart.core.settings import OperatorSettings
from aiart.core.spec import parse_manifest
from aiart_runtime.settings import BatchingSettings, ModelSettings, TensorSpec
from aiohttp import web
from aiohttp.test_utils import TestServer

GOLDEN = Path(__file__).with_name("golden")
MANIFEST = """
apiVersion: aiart/v1
kind: Model
metadata: {name: iris, version: "2"}
spec:
  runtime: sklearn
  artifact: {uri: "config://iris-model-2"}
  replicas: 2
  resources: {limits: {cpus: 1, memory: 512Mi}}
  env: {OMP_NUM_THREADS: "1"}
"""


def render(current: bool, **settings: str) -> dict:
    return render_service(
        manifest=parse_manifest(MANIFEST), config_id="cfg123", image="reg:5000/aiart/iris:2-abc",
        settings=OperatorSettings(**settings), current=current, ordinal=3,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("current", [True, False])
def test_service_matches_golden(current: bool) -> None:
    path = GOLDEN / f"iris-2-{'current' if current else 'versioned'}.json"
    got = render(current)
    if os.environ.get("AIART_UPDATE_GOLDEN"):
        path.write_text(json.dumps(got, indent=2, sort_keys=True) + "\n")
    assert got == json.loads(path.read_text())


def test_hash_is_stable_and_changes_with_the_spec() -> None:
    a, b = render(True), render(True)
    assert a["Labels"][L.SPEC_HASH] == spec_hash(b)
    assert spec_hash(render(False)) != spec_hash(a)
    # Moving the current route changes labels only, never the tasks.
    assert task_template_hash(render(False)) == task_template_hash(a)
    assert task_template_hash(render(True, registry="other:5000")) == task_template_hash(a)


def test_model_containers_are_locked_down() -> None:
    container = render(True)["TaskTemplate"]["ContainerSpec"]
    assert container["User"] == "10001:10001"
    assert container["ReadOnly"] is True
    assert container["CapabilityDrop"] == ["ALL"]
    assert not any("docker.sock" in m.get("Source", "") for m in container["Mounts"])


@pytest.mark.parametrize(
    ("current", "rule", "present"),
    [
        (False, "Path(`/v2/models/iris/versions/2`) || PathPrefix(`/v2/models/iris/versions/2/`)", True),
        (False, "Path(`/models/iris/versions/2`) || PathPrefix(`/models/iris/versions/2/`)", True),
        (False, "Path(`/v2/models/iris`) || PathPrefix(`/v2/models/iris/`)", False),
        (True, "Path(`/v2/models/iris`) || PathPrefix(`/v2/models/iris/`)", True),
        (True, "Path(`/models/iris`) || PathPrefix(`/models/iris/`)", True),
    ],
)
def test_route_table(current: bool, rule: str, present: bool) -> None:
    labels = route_labels(name="iris", version="2", current=current, ordinal=3,
                          entrypoint="web", network="aiart-models")
    assert (rule in labels.values()) is present
    assert carries_current_route(labels) is current


def test_versioned_routes_outrank_current_and_newer_current_outranks_older() -> None:
    old = route_labels(name="m", version="1", current=True, ordinal=0, entrypoint="web", network="n")
    new = route_labels(name="m", version="2", current=True, ordinal=1, entrypoint="web", network="n")
    prio = lambda labels, suffix: int(next(v for k, v in labels.items()  # noqa: E731
                                           if k.endswith(f"{suffix}.priority")))
    assert prio(new, "current_v2") > prio(old, "current_v2")
    assert prio(old, "_1_v2") > prio(new, "current_v2")
    # The base-URL routers strip exactly their own prefix.
    assert new["traefik.http.middlewares.aiart_m_2_current_base_strip.stripprefix.prefixes"] == (
        "/models/m")


def test_a_version_header_pins_the_unversioned_route_to_that_version() -> None:
    """``X-Aiart-Version: 1`` on /v2/models/m reaches version 1 even while
    version 2 is current: its pinned routers outrank every current one (and
    stay under the versioned ones), on the same paths, behind the same guard."""
    guard = Guard(auth_url="http://auth:8000", mode="apikey")
    old = route_labels(name="m", version="1", current=False, ordinal=0, entrypoint="web",
                       network="n", guard=guard, host="models.example")
    new = route_labels(name="m", version="2", current=True, ordinal=1, entrypoint="web",
                       network="n", guard=guard, host="models.example")
    routers = "traefik.http.routers.aiart_m"
    assert old[f"{routers}_1_pinned_v2.rule"] == (
        "Host(`models.example`) && ((Path(`/v2/models/m`) || PathPrefix(`/v2/models/m/`)) "
        "&& Header(`X-Aiart-Version`, `1`))")
    assert "Header(`X-Aiart-Version`, `1`)" in old[f"{routers}_1_pinned_base.rule"]
    assert old[f"{routers}_1_pinned_v2.service"] == "aiart_m_1"
    pinned = int(old[f"{routers}_1_pinned_v2.priority"])
    assert int(new[f"{routers}_2_current_v2.priority"]) < pinned < int(
        old[f"{routers}_1_v2.priority"])
    assert old[f"{routers}_1_pinned_base.middlewares"].split(",") == [
        "aiart_m_1_auth", "aiart_m_1_nocred", "aiart_m_1_pinned_base_strip", "aiart_m_1_retry"]
    assert old["traefik.http.middlewares.aiart_m_1_pinned_base_strip.stripprefix.prefixes"] == (
        "/models/m")


def traefik_objects(labels: dict[str, str]) -> set[tuple[str, str]]:
    """(kind, name) of every router, middleware and service that labels define."""
    return {(k.split(".")[2], k.split(".")[3]) for k in labels if k.startswith("traefik.http.")}


@pytest.mark.parametrize(("first", "second"), [
    (("shop-1", "current"), ("shop", "1")),
    (("a-b", "c"), ("a", "b-c")),
    (("m-base", "1"), ("m", "base-1")),
    (("x", "1-current"), ("x-1", "current")),
])
def test_two_models_never_define_the_same_traefik_object(
        first: tuple[str, str], second: tuple[str, str]) -> None:
    """A deployer naming a model or version after a neighbour's routes
    cannot redefine them (Traefik would drop both, or serve the wrong one)."""
    def labels(name: str, version: str) -> dict[str, str]:
        guard = Guard(auth_url="http://auth:8000", mode="apikey", rate_average=5)
        return route_labels(name=name, version=version, current=True, ordinal=1,
                            entrypoint="web", network="n", guard=guard)

    assert not traefik_objects(labels(*first)) & traefik_objects(labels(*second))


def test_closed_by_default_with_the_credential_removed_before_the_model() -> None:
    labels = render(True)["Labels"]
    mw = "traefik.http.middlewares.aiart_iris_2"
    # API keys are checked in the gateway (its plugin), against the key feed.
    assert {k: v for k, v in labels.items() if k.startswith(f"{mw}_auth.")} == {
        f"{mw}_auth.plugin.aiartkeys.model": "iris",
        f"{mw}_auth.plugin.aiartkeys.feed": "http://auth:8000/keys"}
    assert labels[f"{mw}_nocred.headers.customrequestheaders.Authorization"] == ""
    for router in ("v2", "base", "current_v2", "current_base", "pinned_v2", "pinned_base"):
        chain = labels[f"traefik.http.routers.aiart_iris_2_{router}.middlewares"].split(",")
        assert chain[:2] == ["aiart_iris_2_auth", "aiart_iris_2_nocred"], router
    for header in ("Authorization", "X-Api-Key", "Cookie", "X-Aiart-Probe"):
        assert labels[f"{mw}_nocred.headers.customrequestheaders.{header}"] == "", header


def test_oidc_scopes_and_rate_limit_guard_every_route() -> None:
    text = MANIFEST + "  auth: {mode: oidc, scopes: [models:predict, iris]}\n" + (
        "  rateLimit: {average: 50, burst: 100}\n")
    labels = render_service(
        manifest=parse_manifest(text), config_id="c", image="i", settings=OperatorSettings(),
        current=False, ordinal=0)["Labels"]
    mw = "traefik.http.middlewares.aiart_iris_2"
    assert labels[f"{mw}_auth.forwardauth.address"].endswith(
        "?model=iris&version=2&mode=oidc&scopes=models:predict,iris")
    assert (labels[f"{mw}_ratelimit.ratelimit.average"],
            labels[f"{mw}_ratelimit.ratelimit.burst"]) == ("50", "100")
    # Who calls first, then the rate limit per caller (not per address).
    assert labels["traefik.http.routers.aiart_iris_2_v2.middlewares"] == (
        "aiart_iris_2_auth,aiart_iris_2_ratelimit,aiart_iris_2_nocred,aiart_iris_2_retry")
    assert labels[f"{mw}_ratelimit.ratelimit.sourcecriterion.requestheadername"] == (
        "X-Aiart-Subject")
    assert labels[f"{mw}_auth.forwardauth.authResponseHeaders"] == "X-Aiart-Subject"


def test_a_public_model_has_no_auth_but_still_never_sees_a_credential() -> None:
    labels = render_service(
        manifest=parse_manifest(MANIFEST + "  auth: {mode: none}\n"), config_id="c", image="i",
        settings=OperatorSettings(), current=False, ordinal=0)["Labels"]
    assert not any("forwardauth" in k for k in labels)
    mw = "traefik.http.middlewares.aiart_iris_2_nocred.headers.customrequestheaders"
    for header in ("Authorization", "X-Api-Key", "Cookie", "Proxy-Authorization",
                   "X-Aiart-Probe"):
        assert labels[f"{mw}.{header}"] == "", header
    assert labels["traefik.http.routers.aiart_iris_2_v2.middlewares"] == (
        "aiart_iris_2_subject,aiart_iris_2_nocred,aiart_iris_2_retry")
    # A caller cannot pass as someone else to the model or the rate limit.
    assert labels["traefik.http.middlewares.aiart_iris_2_subject.headers.customrequestheaders"
                  ".X-Aiart-Subject"] == "anonymous"


def test_every_route_retries_another_task_last_in_its_chain() -> None:
    # Last: a retry must not run forwardAuth or the rate limit again.
    labels = render(True)["Labels"]
    assert labels["traefik.http.middlewares.aiart_iris_2_retry.retry.attempts"] == "3"
    for router in ("v2", "base", "current_v2", "current_base", "pinned_v2", "pinned_base"):
        chain = labels[f"traefik.http.routers.aiart_iris_2_{router}.middlewares"].split(",")
        assert chain[-1] == "aiart_iris_2_retry", router


def test_model_tasks_are_placed_by_the_site_constraints_and_only_then() -> None:
    manifest = parse_manifest(MANIFEST)
    placed = render_service(
        manifest=manifest, config_id="c", image="i", current=False, ordinal=0,
        settings=OperatorSettings.from_env({"AIART_MODEL_CONSTRAINTS": "node.role==worker, zone==a"}))
    assert placed["TaskTemplate"]["Placement"] == {
        "Constraints": ["node.role==worker", "zone==a"]}
    plain = render_service(manifest=manifest, config_id="c", image="i", current=False,
                           ordinal=0, settings=OperatorSettings.from_env({}))
    # No key at all when unset: the task template (and so every served
    # model) is unchanged by an upgrade that does not use the setting.
    assert "Placement" not in plain["TaskTemplate"]


def env_of(spec: dict) -> dict[str, str]:
    return dict(e.split("=", 1) for e in spec["TaskTemplate"]["ContainerSpec"]["Env"])


def test_models_trace_to_the_sites_endpoint_unless_their_manifest_says_otherwise() -> None:
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env_of(render(True))
    traced = env_of(render(True, model_otlp_endpoint="http://collector:4318"))
    assert traced["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
    own = parse_manifest(MANIFEST.replace(
        'env: {OMP_NUM_THREADS: "1"}',
        'env: {OMP_NUM_THREADS: "1", OTEL_EXPORTER_OTLP_ENDPOINT: "http://mine:4318"}'))
    spec = render_service(manifest=own, config_id="c", image="i", current=True, ordinal=0,
                          settings=OperatorSettings(model_otlp_endpoint="http://collector:4318"))
    assert env_of(spec)["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://mine:4318"


def test_scalable_versions_drain_and_the_engine_waits_for_the_drain() -> None:
    fixed = render(True)
    assert not {"AIART_DRAIN_SECONDS", "AIART_DRAIN_LIMIT_SECONDS"} & set(env_of(fixed))
    scalable = render_service(
        manifest=parse_manifest(MANIFEST.replace("replicas: 2", "scaling: {minReplicas: 0}")),
        config_id="c", image="i", current=True, ordinal=0, settings=OperatorSettings())
    env = env_of(scalable)
    assert float(env["AIART_DRAIN_SECONDS"]) > 0
    assert float(env["AIART_DRAIN_LIMIT_SECONDS"]) == DRAIN_LIMIT_SECONDS
    # Killed only after the longest drain, with time left to finish answers.
    grace = scalable["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] / 1e9
    assert grace > DRAIN_LIMIT_SECONDS
    assert fixed["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"] / 1e9 < grace


def test_aiart_runtimes_are_scraped_on_their_port_ready_images_are_not() -> None:
    assert render(True)["Labels"][L.METRICS_PORT] == "8080"
    image = parse_manifest(
        "apiVersion: aiart/v1\nkind: Model\nmetadata: {name: web, version: '1'}\n"
        "spec: {runtime: image, image: 'reg/web:1', port: 9000}\n")
    spec = render_service(manifest=image, config_id="c", image="reg/web:1", current=True,
                          ordinal=0, settings=OperatorSettings())
    assert L.METRICS_PORT not in spec["Labels"]


def test_aiart_servers_and_their_routes_share_a_gateway_token_ready_images_get_none() -> None:
    # (A manifest cannot set it: AIART_* variables are refused by the parser.)
    served = render_service(manifest=parse_manifest(MANIFEST), config_id="c", image="i",
                            settings=OperatorSettings(), current=True, ordinal=0,
                            gateway_token="t0k3n")
    env = served["TaskTemplate"]["ContainerSpec"]["Env"]
    assert [e for e in env if e.startswith("AIART_GATEWAY_TOKEN=")] == [
        "AIART_GATEWAY_TOKEN=t0k3n"]
    header = f"customrequestheaders.{GATEWAY_HEADER}"
    set_by = {k: v for k, v in served["Labels"].items() if k.endswith(header)}
    assert list(set_by.values()) == ["t0k3n"]
    (middleware,) = (k.split(".")[3] for k in set_by)
    # On every router, the versioned and the unversioned ones.
    routers = {k: v for k, v in served["Labels"].items() if k.endswith(".middlewares")}
    # (six HTTP routers: versioned, pinned and current; two gRPC ones)
    assert len(routers) == 8 and all(middleware in v.split(",") for v in routers.values())
    byo = parse_manifest(MANIFEST.replace("runtime: sklearn", "runtime: image\n  image: x:1")
                         .replace('  artifact: {uri: "config://iris-model-2"}\n', ""))
    ready = render_service(manifest=byo, config_id="c", image="x:1", settings=OperatorSettings(),
                           current=False, ordinal=0, gateway_token="t0k3n")
    assert "t0k3n" not in json.dumps(ready)
    # A caller's own header is removed on the way in all the same.
    assert [v for k, v in ready["Labels"].items() if k.endswith(header)] == [""]


def test_with_a_gateway_host_every_route_answers_that_host_only() -> None:
    host = "aiart.factory.example"
    labels = route_labels(name="m", version="1", current=True, ordinal=0,
                          entrypoint="websecure", network="n", host=host, grpc_port=8081)
    rules = [v for k, v in labels.items() if k.endswith(".rule")]
    assert len(rules) >= 2 and all(r.startswith(f"Host(`{host}`) && (") for r in rules), rules
    anyhost = route_labels(name="m", version="1", current=True, ordinal=0,
                           entrypoint="websecure", network="n")
    assert not [v for k, v in anyhost.items() if k.endswith(".rule") and "Host(" in v]
    assert OperatorSettings.from_env({"AIART_GATEWAY_HOST": "AIART.Factory.example"}).gateway_host == host
    # It goes into Traefik rules as is: nothing but a DNS name.
    for bad in ("a`) || PathPrefix(`/", "two words", "-a.example", "a..example"):
        with pytest.raises(ValueError, match="AIART_GATEWAY_HOST"):
            OperatorSettings.from_env({"AIART_GATEWAY_HOST": bad})


async def test_the_operator_probes_under_the_gateway_host() -> None:
    seen: list[str] = []

    async def ready(request: web.Request) -> web.Response:
        seen.append(request.host)
        return web.json_response({"name": "m", "ready": True})

    app = web.Application()
    app.router.add_get("/{tail:.*}", ready)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        gateway = Gateway(str(server.make_url("")), session, host="aiart.factory.example")
        await gateway.version_ready("m", "1")
    assert seen == ["aiart.factory.example"]


async def test_a_404_to_every_contract_call_is_no_route_until_the_version_settles() -> None:
    # What the gateway answers before it has read a new version's route, and
    # what an image that serves nothing of the contract answers: the same.
    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404, text="404 page not found")

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", missing)
    async with TestServer(app) as server, aiohttp.ClientSession() as session:
        gateway = Gateway(str(server.make_url("")), session)
        assert await gateway.contract_problems("m", "1", settled=False) is None
        problems = await gateway.contract_problems("m", "1", settled=True)
    assert problems is not None and "GET /v2/health/live answered 404" in problems


def test_traefik_checks_the_auth_services_certificate_against_the_internal_ca() -> None:
    guard = Guard(auth_url="https://auth:8000", auth_ca="/etc/traefik/internal-ca.crt",
                  mode="oidc")
    labels, _ = guard_labels("iris", "2", guard)
    mw = "traefik.http.middlewares.aiart_iris_2_auth.forwardauth"
    assert labels[f"{mw}.address"].startswith("https://auth:8000/verify?")
    assert labels[f"{mw}.tls.ca"] == "/etc/traefik/internal-ca.crt"
    plain, _ = guard_labels("iris", "2", Guard(auth_url="http://auth:8000", mode="oidc"))
    assert not any(".tls." in label for label in plain)
    # The key plugin reads its feed with the same CA.
    keyed, _ = guard_labels("iris", "2", dataclasses.replace(guard, mode="apikey"))
    plugin = "traefik.http.middlewares.aiart_iris_2_auth.plugin.aiartkeys"
    assert keyed[f"{plugin}.feed"] == "https://auth:8000/keys"
    assert keyed[f"{plugin}.ca"] == "/etc/traefik/internal-ca.crt"


def test_the_key_plugin_lets_in_the_versions_probe_by_its_digest_only() -> None:
    guard = Guard(auth_url="http://auth:8000", mode="apikey", probe_digest="ab" * 32)
    labels, _ = guard_labels("iris", "2", guard)
    assert labels["traefik.http.middlewares.aiart_iris_2_auth.plugin.aiartkeys.probeDigest"] == (
        "ab" * 32)


def test_model_json_is_written_and_read_by_one_definition(tmp_path: Path) -> None:
    manifest = parse_manifest(MANIFEST.replace("runtime: sklearn", "runtime: onnx") + (
        "  inputs: [{name: x, datatype: FP32, shape: [-1, 4]}]\n"
        "  outputs: [{name: y, datatype: INT64, shape: [-1]}]\n"))
    written = model_settings(manifest, "model.onnx")
    (tmp_path / "model.json").write_bytes(written.to_json())
    read = ModelSettings.load(tmp_path)
    assert read == dataclasses.replace(written, artifact=tmp_path / "model.onnx")
    assert read.inputs == [TensorSpec(name="x", datatype="FP32", shape=[-1, 4])]
    assert read.batching is None and b"batching" not in written.to_json()  # tags stay
    batched = model_settings(parse_manifest(
        MANIFEST + "  batching: {maxBatchSize: 64, maxLatencyMs: 2.5}\n"), "model.pkl")
    (tmp_path / "model.json").write_bytes(batched.to_json())
    assert ModelSettings.load(tmp_path).batching == BatchingSettings(
        max_batch_size=64, max_latency_ms=2.5)
    assert read.max_request_bytes is None and b"max_request_bytes" not in written.to_json()
    limited = model_settings(parse_manifest(MANIFEST + "  maxRequestBytes: 65536\n"), "m.pkl")
    (tmp_path / "model.json").write_bytes(limited.to_json())
    assert ModelSettings.load(tmp_path).max_request_bytes == 65536


def test_grpc_calls_are_routed_by_metadata_behind_the_same_guard() -> None:
    text = MANIFEST + "  rateLimit: {average: 50}\n"
    labels = render_service(manifest=parse_manifest(text), config_id="c", image="i",
                            settings=OperatorSettings(), current=True, ordinal=3,
                            gateway_token="t")["Labels"]
    svc = "traefik.http.services.aiart_iris_2_grpc.loadbalancer.server"
    assert (labels[f"{svc}.port"], labels[f"{svc}.scheme"]) == ("8081", "h2c")
    router = "traefik.http.routers.aiart_iris_2"
    prefix = "PathPrefix(`/inference.GRPCInferenceService/`) && Header(`aiart-model`, `iris`)"
    assert labels[f"{router}_grpc.rule"] == f"{prefix} && Header(`aiart-version`, `2`)"
    assert labels[f"{router}_current_grpc.rule"] == prefix
    # A pinned version outranks the current one, as on HTTP.
    assert labels[f"{router}_grpc.priority"] == labels[f"{router}_v2.priority"]
    assert labels[f"{router}_current_grpc.priority"] == labels[f"{router}_current_v2.priority"]
    for name in ("grpc", "current_grpc"):
        assert labels[f"{router}_{name}.service"] == "aiart_iris_2_grpc"
        # The key check, the rate limit, the credential rewrite (and the
        # gateway's token), the retry: as on the HTTP routes.
        assert labels[f"{router}_{name}.middlewares"] == labels[f"{router}_v2.middlewares"] == (
            "aiart_iris_2_auth,aiart_iris_2_ratelimit,aiart_iris_2_nocred,aiart_iris_2_retry")
    versioned = render(False)["Labels"]
    assert f"{router}_grpc.rule" in versioned and f"{router}_current_grpc.rule" not in versioned
    # A ready image serves what it serves: no gRPC routes are made up for it.
    byo = parse_manifest(MANIFEST.replace("runtime: sklearn", "runtime: image\n  image: x:1")
                         .replace('  artifact: {uri: "config://iris-model-2"}\n', ""))
    ready = render_service(manifest=byo, config_id="c", image="x:1", settings=OperatorSettings(),
                           current=True, ordinal=0)["Labels"]
    assert not [k for k in ready if "grpc" in k]
