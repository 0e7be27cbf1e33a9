"""Desired Swarm services and Traefik routes for model versions. Pure: no I/O.

Routes (Traefik's Swarm provider reads them from service labels):

- ``/v2/models/<m>/versions/<v>[/...]``  -> version v, path unchanged
- ``/models/<m>/versions/<v>[/...]``     -> version v, prefix stripped
- ``/v2/models/<m>[/...]`` and ``/models/<m>[/...]`` -> the current version
- the same with the header ``X-Aiart-Version: <v>`` -> version v (a pinned
  call: A/B tests and smoke checks on the model's own address); a version
  the model does not have falls to the current version's server, which
  answers 404 for it rather than answering in another version's name
- gRPC (the Open Inference Protocol's service, h2c to the server's gRPC
  port) by metadata: ``aiart-model: <m>`` and ``aiart-version: <v>`` ->
  version v; ``aiart-model: <m>`` alone -> the current version

Versioned routers outrank the current ones. Every version's current routers
have their own names and a priority that grows with the version's age order,
so during a hand-over both versions carry them and the newer one wins; no
request meets a gap.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiart_runtime.settings import BatchingSettings, BatchJob, ModelSettings, TensorSpec

from aiart.core import jobs
from aiart.core import labels as L
from aiart.core.settings import OperatorSettings
from aiart.core.spec import Manifest, Runtime, Stream, Tensor

SERVER_PORT = 8080
# aiart's runtimes serve the Open Inference Protocol over gRPC here
# (aiart_runtime/grpc_server.py), routed by the metadata below.
GRPC_PORT = 8081
GRPC_SERVICE_PREFIX = "/inference.GRPCInferenceService/"
GRPC_MODEL_HEADER = "aiart-model"
GRPC_VERSION_HEADER = "aiart-version"
RUNTIME_USER = "10001:10001"
VERSIONED_PRIORITY = 1_000_000
# Below the versioned routers (a versioned path is never pinned elsewhere),
# above every current one.
PINNED_PRIORITY = 500_000
CURRENT_PRIORITY_BASE = 10_000
# The header a caller pins a version with on the model's unversioned routes
# (the runtimes check it too: runtimes/aiart_runtime/server.py).
VERSION_HEADER = "X-Aiart-Version"
# Tries of another task when one cannot be reached (the gateway's dial timeout
# in stack.yml bounds each).
RETRY_ATTEMPTS = 3
# A scalable version's task told to stop answers until no request has come
# for DRAIN_SECONDS, at most DRAIN_LIMIT_SECONDS (runtimes/aiart_runtime/
# __main__.py): the gateway reads the swarm every second (stack.yml,
# refreshSeconds) and applies what it read soon after (its provider
# throttle), later on a busy host, and whatever it sends the task until then
# must be answered. The
# engine kills a task STOP_GRACE_SECONDS after it told it to stop: a
# scalable version's then finishes its last answers after its drain.
DRAIN_SECONDS = 4
DRAIN_LIMIT_SECONDS = 30
STOP_GRACE_SECONDS = 10
_SECOND = 1_000_000_000


def service_name(name: str, version: str) -> str:
    return f"aiart-{name}-{version}"


def traefik_name(name: str, version: str) -> str:
    """The prefix of a version's Traefik routers, middlewares and service.

    Underscores join the parts because no model name or version may hold
    one (both are DNS labels): ``shop-1``/``current`` and ``shop``/``1``,
    or ``a-b``/``c`` and ``a``/``b-c``, never name the same router, so one
    deployer's model cannot replace or knock out another's routes."""
    return f"aiart_{name}_{version}"


def prefix_rule(path: str, host: str = "", pinned: str = "") -> str:
    # Path(p) || PathPrefix(p/): "/models/iris" must not also match "/models/iris2".
    rule = f"Path(`{path}`) || PathPrefix(`{path}/`)"
    if pinned:
        rule = f"({rule}) && Header(`{VERSION_HEADER}`, `{pinned}`)"
    return f"Host(`{host}`) && ({rule})" if host else rule


@dataclass(frozen=True, slots=True, kw_only=True)
class Guard:
    """What stands before a version's routes: who may call it, and how often."""

    auth_url: str  # the forwardAuth service, as Traefik reaches it
    # The CA file (in Traefik's container) the auth service's certificate
    # chains to, for an https auth_url; empty: the system's.
    auth_ca: str = ""
    mode: str = "none"
    scopes: tuple[str, ...] = ()
    rate_average: int | None = None
    rate_burst: int | None = None
    # The SHA-256 (hex) of the version's probe token (auth/access.py), which
    # the gateway's key plugin lets in; empty: no probe gets in that way.
    probe_digest: str = ""


# Request headers that may carry a credential: removed on every model route,
# whatever its auth mode, so that no model ever sees one (a caller may send a
# key to a public model; the CLI and the operator's probes send theirs).
# Who the gateway let in, as the auth service (or a public route) says.
SUBJECT_HEADER = "X-Aiart-Subject"
# The operator's probe token for one version (auth/access.py makes and checks it).
PROBE_HEADER = "X-Aiart-Probe"
CREDENTIAL_HEADERS = ("Authorization", "X-Api-Key", "Cookie", "Proxy-Authorization",
                      PROBE_HEADER)
# The gateway's API key plugin, as stack.yml names it to Traefik.
KEY_PLUGIN = "aiartkeys"
# What the gateway's routes hand a model server, which answers inference to
# nothing else (auth/access.py gateway_token; runtimes' gateway_only.py). The
# route sets it, so a caller's own value never reaches the model.
GATEWAY_HEADER = "X-Aiart-Gateway"


def guard_middlewares(name: str, version: str, guard: Guard
                      ) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """A version's guard as Traefik's dynamic configuration (middleware name
    -> its definition), and the names in the order to apply. Labels on the
    version's service carry it (``guard_labels``); the operator's traffic
    feed serves the same to routes that must outlive the service's tasks
    (core/traffic.py).

    Who calls comes first: forwardAuth sets ``X-Aiart-Subject`` to the
    principal it let in (``apikey:<name>``, ``oidc:<sub>``); a public route
    sets it to ``anonymous`` (a caller's own value never passes, so a model
    can trust it). The rate limit then counts per subject and per model, so
    one key's flood does not starve another key, whatever addresses they
    come from; route_labels adds the header rewrite that removes every
    credential."""
    out: dict[str, dict[str, Any]] = {}
    svc = traefik_name(name, version)
    if guard.mode == "apikey":
        # Checked in the gateway itself (gateway/plugins, keyauth.go), against
        # the auth service's key feed: no second HTTP hop per request.
        plugin: dict[str, Any] = {"model": name, "feed": f"{guard.auth_url}/keys"}
        if guard.auth_ca:
            plugin["ca"] = guard.auth_ca
        if guard.probe_digest:
            plugin["probeDigest"] = guard.probe_digest
        out[f"{svc}_auth"] = {"plugin": {KEY_PLUGIN: plugin}}
    elif guard.mode != "none":
        # Only aiart-made values go into the address: the name is a DNS label
        # and scopes match a strict pattern (spec.py), so nothing needs escaping.
        # The version lets the auth service accept this version's probe token.
        query = f"model={name}&version={version}&mode={guard.mode}"
        if guard.scopes:
            query += f"&scopes={','.join(guard.scopes)}"
        forward: dict[str, Any] = {"address": f"{guard.auth_url}/verify?{query}",
                                   "authResponseHeaders": [SUBJECT_HEADER]}
        if guard.auth_ca:
            forward["tls"] = {"ca": guard.auth_ca}
        out[f"{svc}_auth"] = {"forwardauth": forward}
    else:
        out[f"{svc}_subject"] = {"headers": {"customrequestheaders": {
            SUBJECT_HEADER: "anonymous"}}}
    if guard.rate_average is not None:
        out[f"{svc}_ratelimit"] = {"ratelimit": {
            "average": guard.rate_average, "period": "1s",
            "burst": guard.rate_burst or guard.rate_average,
            "sourcecriterion": {"requestheadername": SUBJECT_HEADER}}}
    return out, list(out)


def as_labels(prefix: str, tree: dict[str, Any]) -> dict[str, str]:
    """Traefik's dynamic configuration as Swarm labels: nested keys joined
    with dots, lists with commas (Traefik reads keys either way, whatever
    their case)."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(as_labels(f"{prefix}.{key}", value))
        elif isinstance(value, list):
            out[f"{prefix}.{key}"] = ",".join(str(v) for v in value)
        else:
            out[f"{prefix}.{key}"] = str(value)
    return out


def guard_labels(name: str, version: str, guard: Guard) -> tuple[dict[str, str], list[str]]:
    """Middleware labels for a version (``guard_middlewares``), and their
    names in the order to apply."""
    middlewares, chain = guard_middlewares(name, version, guard)
    return as_labels("traefik.http.middlewares", middlewares), chain


def route_labels(
    *, name: str, version: str, current: bool, ordinal: int, entrypoint: str, network: str,
    port: int = SERVER_PORT, guard: Guard | None = None, host: str = "",
    gateway_token: str = "", grpc_port: int | None = None,
) -> dict[str, str]:
    """Traefik labels for one version; ``current`` adds the unversioned routes.
    ``gateway_token``: what every route hands the model server, to show it
    the request came through the gateway (empty: nothing). ``grpc_port``:
    the server's gRPC port, routed as the module's docstring says (None: no
    gRPC routes)."""
    svc = traefik_name(name, version)
    out: dict[str, str] = {
        "traefik.enable": "true",
        "traefik.swarm.network": network,
        f"traefik.http.services.{svc}.loadbalancer.server.port": str(port),
    }
    chain: list[str] = []
    if guard is not None:
        guarding, chain = guard_labels(name, version, guard)
        out.update(guarding)
    # After the guard, on every route whatever its auth mode: no model ever
    # sees a credential. The same rewrite sets the gateway's token (an empty
    # value removes the header).
    rewrite = {**dict.fromkeys(CREDENTIAL_HEADERS, ""), GATEWAY_HEADER: gateway_token}
    for header, value in rewrite.items():
        out[f"traefik.http.middlewares.{svc}_nocred.headers.customrequestheaders.{header}"] = (
            value)
    chain.append(f"{svc}_nocred")
    # A task on a lost node refuses or drops connections until the swarm
    # reschedules it: Traefik then tries another task. It retries only when it
    # could not reach a task, never after a model answered, so a prediction
    # is not made twice.
    out[f"traefik.http.middlewares.{svc}_retry.retry.attempts"] = str(RETRY_ATTEMPTS)
    out[f"traefik.http.middlewares.{svc}_retry.retry.initialinterval"] = "100ms"

    def router(router_name: str, path: str, priority: int, strip: bool,
               pinned: str = "") -> None:
        key = f"traefik.http.routers.{router_name}"
        out[f"{key}.rule"] = prefix_rule(path, host, pinned)
        out[f"{key}.entrypoints"] = entrypoint
        out[f"{key}.service"] = svc
        out[f"{key}.priority"] = str(priority)
        middlewares = list(chain)
        if strip:
            middleware = f"{router_name}_strip"
            out[f"traefik.http.middlewares.{middleware}.stripprefix.prefixes"] = path
            middlewares.append(middleware)
        # Last, so that a retry re-runs neither the rate limit nor forwardAuth.
        middlewares.append(f"{svc}_retry")
        out[f"{key}.middlewares"] = ",".join(middlewares)

    router(f"{svc}_v2", f"/v2/models/{name}/versions/{version}", VERSIONED_PRIORITY, False)
    router(f"{svc}_base", f"/models/{name}/versions/{version}", VERSIONED_PRIORITY, True)
    router(f"{svc}_pinned_v2", f"/v2/models/{name}", PINNED_PRIORITY, False, version)
    router(f"{svc}_pinned_base", f"/models/{name}", PINNED_PRIORITY, True, version)
    if current:
        priority = CURRENT_PRIORITY_BASE + ordinal
        router(f"{svc}_current_v2", f"/v2/models/{name}", priority, False)
        router(f"{svc}_current_base", f"/models/{name}", priority, True)
    if grpc_port is not None:
        out.update(_grpc_routes(svc, name, version, current, ordinal, entrypoint, host,
                                grpc_port, [*chain, f"{svc}_retry"]))
    return out


def _grpc_routes(svc: str, name: str, version: str, current: bool, ordinal: int,
                 entrypoint: str, host: str, port: int, middlewares: list[str]
                 ) -> dict[str, str]:
    """The version's gRPC service (HTTP/2 without TLS to the task) and its
    routers, behind the same middlewares as its HTTP routes: the key check,
    the rate limit and the credential rewrite apply to gRPC calls alike
    (their metadata are HTTP/2 headers)."""
    grpc_svc = f"{svc}_grpc"
    out = {
        f"traefik.http.services.{grpc_svc}.loadbalancer.server.port": str(port),
        f"traefik.http.services.{grpc_svc}.loadbalancer.server.scheme": "h2c",
    }
    base = f"PathPrefix(`{GRPC_SERVICE_PREFIX}`) && Header(`{GRPC_MODEL_HEADER}`, `{name}`)"
    routers = [(f"{svc}_grpc", f"{base} && Header(`{GRPC_VERSION_HEADER}`, `{version}`)",
                VERSIONED_PRIORITY)]
    if current:
        routers.append((f"{svc}_current_grpc", base, CURRENT_PRIORITY_BASE + ordinal))
    for router_name, rule, priority in routers:
        key = f"traefik.http.routers.{router_name}"
        out[f"{key}.rule"] = f"Host(`{host}`) && ({rule})" if host else rule
        out[f"{key}.entrypoints"] = entrypoint
        out[f"{key}.service"] = grpc_svc
        out[f"{key}.priority"] = str(priority)
        out[f"{key}.middlewares"] = ",".join(middlewares)
    return out


def carries_current_route(service_labels: dict[str, str]) -> bool:
    return any(k.endswith("_current_v2.rule") for k in service_labels)


def model_settings(manifest: Manifest, artifact_file: str) -> ModelSettings:
    """The model.json a version's image holds (its schema is the runtime's)."""
    spec = manifest.spec

    def tensors(items: list[Tensor] | None) -> list[TensorSpec] | None:
        return [TensorSpec(name=t.name, datatype=str(t.datatype), shape=list(t.shape))
                for t in items] if items else None

    return ModelSettings(
        name=manifest.metadata.name,
        version=manifest.metadata.version,
        runtime=spec.runtime.value,
        artifact=Path(artifact_file),
        inputs=tensors(spec.inputs),
        outputs=tensors(spec.outputs),
        allow_unsafe_pickle=bool(spec.artifact and spec.artifact.allowUnsafePickle),
        entrypoint=spec.entrypoint,
        batching=BatchingSettings(max_batch_size=spec.batching.maxBatchSize,
                                  max_latency_ms=spec.batching.maxLatencyMs)
        if spec.batching else None,
        max_request_bytes=spec.maxRequestBytes,
    )


def _resources(manifest: Manifest) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, key in (("limits", "Limits"), ("reservations", "Reservations")):
        res = getattr(manifest.spec.resources, field)
        entry: dict[str, int] = {}
        if res.cpus is not None:
            entry["NanoCPUs"] = int(res.cpus * 1e9)
        if res.memory_bytes is not None:
            entry["MemoryBytes"] = res.memory_bytes
        if entry:
            out[key] = entry
    return out


def _container_hardening(manifest: Manifest) -> dict[str, Any]:
    common: dict[str, Any] = {
        "CapabilityDrop": ["ALL"],
        "Mounts": [{"Type": "tmpfs", "Target": "/tmp", "TmpfsOptions": {"SizeBytes": 64 << 20}}],
    }
    if manifest.spec.runtime is Runtime.IMAGE:
        # A ready image keeps its own user and filesystem: aiart cannot know
        # what it writes, and has no probe program inside it.
        return common
    return {
        # Model code never needs root, a writable image or any capability; a
        # pickle that runs code finds none of them.
        "User": RUNTIME_USER,
        "ReadOnly": True,
        **common,
        # First checked half a second after the start, so that a new task
        # is routed as soon as it answers; then every 3 s, since the probe
        # holds an answer that came at once (runtimes/aiart_runtime/probe.py);
        # judged leniently, so that a host busy with a neighbour's image
        # build (seconds without CPU) does not get a healthy model killed.
        "Healthcheck": {
            "Test": ["CMD", "/opt/aiart/bin/python", "-m", "aiart_runtime.probe"],
            "Interval": _SECOND // 2,
            "Timeout": 6 * _SECOND,
            "Retries": 5,
            "StartPeriod": 120 * _SECOND,
        },
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreAccess:
    """What a model container gets when its manifest asks for the object store:
    the endpoint in its environment, the keys as Docker secret files."""

    endpoint: str
    secure: bool
    access_key_secret: tuple[str, str]  # (secret id, secret name)
    secret_key_secret: tuple[str, str]


STORE_SECRETS_DIR = "/run/secrets"


def _store_access(manifest: Manifest, access: StoreAccess) -> tuple[dict[str, str], list[Any]]:
    name = manifest.metadata.name
    # aiart's runtimes run as RUNTIME_USER; a ready image may run as anyone.
    owner = RUNTIME_USER.split(":") if manifest.spec.runtime is not Runtime.IMAGE else ["0", "0"]
    mode = 0o400 if manifest.spec.runtime is not Runtime.IMAGE else 0o444
    secrets, env = [], {
        "AIART_STORE_ENDPOINT": access.endpoint,
        "AIART_STORE_SECURE": "true" if access.secure else "false",
        "AIART_STORE_BUCKET": f"aiart-{name}",
    }
    for variable, target, (secret_id, secret_name) in (
            ("AIART_STORE_ACCESS_KEY_FILE", "aiart-store-access-key", access.access_key_secret),
            ("AIART_STORE_SECRET_KEY_FILE", "aiart-store-secret-key", access.secret_key_secret)):
        env[variable] = f"{STORE_SECRETS_DIR}/{target}"
        secrets.append({"File": {"Name": target, "UID": owner[0], "GID": owner[1], "Mode": mode},
                        "SecretID": secret_id, "SecretName": secret_name})
    return env, secrets


def guard_of(manifest: Manifest, settings: OperatorSettings, probe_digest: str = "") -> Guard:
    spec = manifest.spec
    return Guard(auth_url=settings.auth_url, auth_ca=settings.auth_ca,
                 mode=spec.auth.mode.value, probe_digest=probe_digest,
                 scopes=tuple(spec.auth.scopes),
                 rate_average=spec.rateLimit.average if spec.rateLimit else None,
                 rate_burst=spec.rateLimit.burst if spec.rateLimit else None)


def render_service(
    *,
    manifest: Manifest,
    config_id: str,
    image: str,
    settings: OperatorSettings,
    current: bool,
    ordinal: int,
    store_access: StoreAccess | None = None,
    gateway_token: str = "",
    probe_digest: str = "",
    rollout_role: str = "",
    replicas: int | None = None,
) -> dict[str, Any]:
    """The Docker service spec (Engine API JSON) for one model version.
    ``gateway_token`` (auth/access.py gateway_token; empty: none): aiart's
    model servers answer inference only to requests that carry it, which
    the version's routes add. ``probe_digest``: see Guard. ``replicas``: a
    scalable version's, as the autoscaler decided (core/scaling.py);
    None: the manifest's fixed ``spec.replicas``."""
    name, version = manifest.metadata.name, manifest.metadata.version
    svc = service_name(name, version)
    identity = {
        L.MANAGED_BY: L.MANAGED_BY_VALUE,
        L.MODEL: name,
        L.VERSION: version,
        L.OWNER: config_id,
    }
    # The site's tracing endpoint first: a manifest's own OTEL_* settings win.
    tracing = ({"OTEL_EXPORTER_OTLP_ENDPOINT": settings.model_otlp_endpoint}
               if settings.model_otlp_endpoint else {})
    env = {**tracing, **manifest.spec.env, "AIART_MODEL_NAME": name,
           "AIART_MODEL_VERSION": version}
    if manifest.spec.runtime is Runtime.IMAGE:
        # A ready image runs its own server, which would not check it: the
        # token would only be one more secret in a stranger's hands.
        gateway_token = ""
    if gateway_token:
        # After the manifest's own: only the gateway may call aiart's servers.
        env["AIART_GATEWAY_TOKEN"] = gateway_token
    if manifest.spec.scaling is not None:
        # A task told to stop goes on answering while the gateway still sends
        # it requests: they must not fail (scale-down, and scale-to-zero with
        # no other task to try).
        env["AIART_DRAIN_SECONDS"] = str(DRAIN_SECONDS)
        env["AIART_DRAIN_LIMIT_SECONDS"] = str(DRAIN_LIMIT_SECONDS)
    secrets: list[Any] = []
    if manifest.spec.wants_store and store_access is not None:
        store_env, secrets = _store_access(manifest, store_access)
        env.update(store_env)
        if manifest.spec.logging is not None:
            # An environment variable, not model.json: a new sample restarts
            # the tasks but builds no image.
            env["AIART_PAYLOAD_SAMPLE"] = repr(manifest.spec.logging.sample)
    spec: dict[str, Any] = {
        "Name": svc,
        "Labels": {
            **identity,
            **route_labels(
                name=name, version=version, current=current, ordinal=ordinal,
                entrypoint=settings.entrypoint, network=settings.network,
                port=manifest.spec.port, guard=guard_of(manifest, settings, probe_digest),
                host=settings.gateway_host, gateway_token=gateway_token,
                grpc_port=None if manifest.spec.runtime is Runtime.IMAGE else GRPC_PORT,
            ),
        },
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": image,
                # No owner here: re-creating a config with the same content must
                # not restart its tasks.
                "Labels": {k: v for k, v in identity.items() if k != L.OWNER},
                "Env": [f"{k}={v}" for k, v in sorted(env.items())],
                **_container_hardening(manifest),
                **({"Secrets": secrets} if secrets else {}),
                "StopGracePeriod": (STOP_GRACE_SECONDS + (
                    DRAIN_LIMIT_SECONDS if manifest.spec.scaling is not None else 0)) * _SECOND,
            },
            "Resources": _resources(manifest),
            **_placement(settings),
            "RestartPolicy": {"Condition": "any", "Delay": 2 * _SECOND, "MaxAttempts": 0},
            "Networks": [{"Target": settings.network}],
        },
        "Mode": {"Replicated": {"Replicas": manifest.spec.replicas if replicas is None
                                else replicas}},
        # start-first: a changed version starts its new task before the old
        # one stops, so an update of a served model drops no request.
        "UpdateConfig": {"Parallelism": 1, "Order": "start-first", "FailureAction": "pause"},
        # No VIP: Traefik dials task addresses directly, which needs no IPVS.
        "EndpointSpec": {"Mode": "dnsrr"},
    }
    if manifest.spec.runtime is not Runtime.IMAGE:
        # aiart's runtimes serve /metrics next to inference; a ready image
        # is scraped only if it says so itself (docs/observability.md).
        spec["Labels"][L.METRICS_PORT] = str(manifest.spec.port)
    if rollout_role:
        # A label of the service alone: it comes and goes with no task restart.
        spec["Labels"][L.ROLLOUT_ROLE] = rollout_role
    if manifest.spec.store.deleteWithModel:
        # Read when the model's last config is gone and the manifest with it.
        spec["Labels"][L.DELETE_BUCKET] = "true"
    spec["Labels"][L.TASK_HASH] = task_template_hash(spec)
    spec["Labels"][L.SPEC_HASH] = spec_hash(spec)
    return spec


def _placement(settings: OperatorSettings) -> dict[str, Any]:
    # Absent unless set: a new key would change every model's task template
    # and restart every served model on an upgrade of aiart.
    if not settings.model_constraints:
        return {}
    return {"Placement": {"Constraints": list(settings.model_constraints)}}


def spec_hash(spec: dict[str, Any]) -> str:
    """A stable hash of a rendered spec, ignoring its own hash label."""
    body = dict(spec)
    body["Labels"] = {k: v for k, v in spec.get("Labels", {}).items() if k != L.SPEC_HASH}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def task_template_hash(spec: dict[str, Any]) -> str:
    return hashlib.sha256(
        json.dumps(spec.get("TaskTemplate", {}), sort_keys=True).encode()
    ).hexdigest()[:16]


def stream_service_name(model: str, stream: str) -> str:
    return f"aiart-stream-{model}-{stream}"


STREAM_KEY_TARGET = "aiart-stream-key"
BROKER_PASSWORD_TARGET = "aiart-broker-password"


def render_stream(*, model: str, stream: Stream, settings: OperatorSettings,
                  key_secret: tuple[str, str], broker_secret: tuple[str, str]) -> dict[str, Any]:
    """The Docker service spec of one stream's bridge (aiart/streams): aiart's
    own image, on aiart's internal network (the broker's and the gateway's,
    no model's), its API key and the broker's password as secret files.
    ``*_secret``: (secret id, secret name)."""
    env = {
        "AIART_STREAM_MODEL": model,
        "AIART_STREAM": stream.model_dump_json(),
        "AIART_BROKER_PASSWORD_FILE": f"{STORE_SECRETS_DIR}/{BROKER_PASSWORD_TARGET}",
        "AIART_STREAM_API_KEY_FILE": f"{STORE_SECRETS_DIR}/{STREAM_KEY_TARGET}",
        "AIART_STREAM_GATEWAY_URL": settings.gateway_url,
    }
    uid, gid = RUNTIME_USER.split(":")
    secrets = [{"File": {"Name": target, "UID": uid, "GID": gid, "Mode": 0o400},
                "SecretID": secret_id, "SecretName": secret_name}
               for target, (secret_id, secret_name) in ((STREAM_KEY_TARGET, key_secret),
                                                         (BROKER_PASSWORD_TARGET, broker_secret))]
    spec: dict[str, Any] = {
        "Name": stream_service_name(model, stream.name),
        "Labels": {L.MANAGED_BY: L.MANAGED_BY_VALUE, L.STREAM_OF: model, L.STREAM: stream.name},
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": settings.stream_image,
                "Command": ["/opt/aiart/bin/python", "-m", "aiart.streams"],
                "Env": [f"{k}={v}" for k, v in sorted(env.items())],
                "User": RUNTIME_USER,
                "ReadOnly": True,
                "CapabilityDrop": ["ALL"],
                "Secrets": secrets,
                # What is scored and not yet acknowledged is sent again by
                # the broker: a stop loses nothing, and needs no long grace.
                "StopGracePeriod": STOP_GRACE_SECONDS * _SECOND,
            },
            # aiart's image is on its managers (it runs the operator there).
            "Placement": {"Constraints": ["node.role == manager"]},
            "RestartPolicy": {"Condition": "any", "Delay": 2 * _SECOND, "MaxAttempts": 0},
            "Networks": [{"Target": settings.stream_network}],
        },
        # One bridge per stream: MQTT acknowledges in order on one session.
        "Mode": {"Replicated": {"Replicas": 1}},
        "UpdateConfig": {"Parallelism": 1, "Order": "stop-first"},
        "EndpointSpec": {"Mode": "dnsrr"},
    }
    spec["Labels"][L.SPEC_HASH] = spec_hash(spec)
    return spec


def render_job(*, job_id: str, model: str, version: str, image: str, job: BatchJob,
               manifest: Manifest, settings: OperatorSettings, store: StoreAccess,
               config_id: str) -> dict[str, Any]:
    """The Docker service spec of a batch job: a Swarm replicated job of the
    model's image (with the job's layer, build/recipes.py BatchRecipe), as
    hardened as the model's servers, with the model's store keys and on the
    model network (the store gateway's). A task that fails is started again
    (it resumes from its last finished chunk), RESTARTS times at most."""
    env, secrets = _store_access(manifest, store)
    env.update({"AIART_BATCH_JOB": job.to_json(), "AIART_MODEL_NAME": model,
                "AIART_MODEL_VERSION": version})
    hardening = _container_hardening(manifest)
    hardening.pop("Healthcheck", None)  # it serves nothing to probe
    labels = {L.MANAGED_BY: L.MANAGED_BY_VALUE, L.JOB: job_id, L.JOB_OF: model,
              L.JOB_VERSION: version, L.OWNER: config_id}
    spec: dict[str, Any] = {
        "Name": jobs.service_name(job_id),
        "Labels": labels,
        "TaskTemplate": {
            "ContainerSpec": {
                "Image": image,
                "Command": ["/opt/aiart/bin/python", "-m", "aiart_runtime", "batch", "/model"],
                "Labels": {L.JOB: job_id},
                "Env": [f"{k}={v}" for k, v in sorted(env.items())],
                **hardening,
                "Secrets": secrets,
                "StopGracePeriod": STOP_GRACE_SECONDS * _SECOND,
            },
            "Resources": _resources(manifest),
            **_placement(settings),
            "RestartPolicy": {"Condition": "on-failure", "Delay": 2 * _SECOND,
                              "MaxAttempts": jobs.RESTARTS},
            "Networks": [{"Target": settings.network}],
        },
        "Mode": {"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
    }
    spec["Labels"][L.SPEC_HASH] = spec_hash(spec)
    return spec
