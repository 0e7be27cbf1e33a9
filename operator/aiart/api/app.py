"""``aiart-api``: aiart's REST API under ``/api/v1``, behind Traefik.

The Docker API stays the single control plane: this service only creates,
reads and removes labelled configs (and puts large artifacts in the object
store); the operator does the rest, as for a config made with ``docker
config create``. Manifests are checked with the operator's own parser.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import httpx
import yaml
from aiart_runtime.settings import BATCH_FORMATS as FORMATS
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive

from aiart.api.openapi import openapi_document
from aiart.api.prometheus import GatewayPasser, PrometheusCharts
from aiart.api.views import (
    Principal,
    config_reference_problem,
    job_view,
    key_request,
    key_view,
    model_views,
    plan_upload,
    reference_problems,
    version_view,
)
from aiart.auth.access import (
    AccessError,
    Role,
    cookie_credential,
    credential_from,
    new_key,
    parse_key,
)
from aiart.auth.keystore import KEY_PREFIX, KeyCache, KeyStore
from aiart.auth.tokens import TokenVerifier
from aiart.catalog.configs import DockerCatalog
from aiart.catalog.records import Catalog, Query
from aiart.core import charts, jobs, rollout
from aiart.core import labels as L
from aiart.core.errors import ObjectMissing, PermanentError, TransientError
from aiart.core.images import DIGEST as IMAGE_DIGEST
from aiart.core.images import image_views, model_repository
from aiart.core.images import in_use as images_in_use
from aiart.core.objects import ConfigObject, ServiceObject
from aiart.core.packages import PackageError, load_private_key
from aiart.core.render import service_name
from aiart.core.settings import ServiceSettings
from aiart.core.spec import DNS_LABEL, MAX_MANIFEST_BYTES, ManifestError
from aiart.core.store_layout import ConfigRef, bucket_for, run_prefix
from aiart.engine.registry import RegistryReader
from aiart.store.client import ObjectTooLarge, Store
from aiart.store.runs import RunError, list_runs, store_run
from aiart.transfer import packages as transfer

log = logging.getLogger("aiart.api")
PREFIX = "/api/v1"
# The largest call the API passes to a model for the dashboard; larger ones
# go to the model's endpoint.
MAX_PASSED_BYTES = 4 * 1024 * 1024
MAX_RUNS_SHOWN = 50
MAX_OBJECTS_LISTED = 1000
MAX_EVENTS = 200
# An object key the API reads: printable, no empty or dot segment.
OBJECT_KEY = re.compile(r"^(?!/)(?!.*(?:^|/)\.{1,2}(?:/|$))(?!.*//)[\x21-\x7e]{1,1024}$")


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def _limited_receive(receive: Receive, limit: int) -> Receive:
    """``receive`` that refuses (413) once the body passes ``limit`` bytes."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise ApiError(413, f"the request is larger than {limit} bytes")
        return message
    return bounded


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


class ApiCluster(Protocol):
    """What the API needs of the engine: configs, and services to read logs of."""

    async def list_model_configs(self, model: str | None = None) -> list[ConfigObject]: ...
    async def list_configs(self, label: str) -> list[ConfigObject]: ...
    async def get_config(self, name: str) -> ConfigObject | None: ...
    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> None: ...
    async def delete_config(self, config_id: str) -> bool: ...
    async def update_config_labels(
        self, config: ConfigObject, labels: Mapping[str, str]) -> ConfigObject | None: ...
    async def list_services(self, model: str | None = None) -> list[ServiceObject]: ...
    async def list_job_services(self) -> list[ServiceObject]: ...
    async def service_logs(self, service_id: str, lines: int = 100) -> str: ...


@dataclass(frozen=True)
class ApiContext:
    """What every handler works with, kept on the application's state."""

    cluster: ApiCluster
    store: Store | None
    keys: KeyCache
    verifier: TokenVerifier | None
    max_upload_bytes: int
    charts: PrometheusCharts | None = None  # where a model's figures are read
    passer: GatewayPasser | None = None  # where the dashboard's inference calls go
    catalog: Catalog | None = None  # the operator's records: a model's events
    registry: RegistryReader | None = None  # where a model's images are listed
    # The site's key that signs exported model packages; None: unsigned.
    package_key: Ed25519PrivateKey | None = None


def context(request: Request) -> ApiContext:
    return request.app.state.api  # type: ignore[no-any-return]


def credential(request: Request) -> tuple[str, str] | None:
    """The caller's credential: in its headers, or the dashboard's cookie
    (auth/access.py cookie_credential)."""
    return credential_from(request.headers) or cookie_credential(
        request.method, request.headers, request.cookies)


async def key_principal(ctx: ApiContext, value: str) -> Principal:
    """An API key's holder, or 401."""
    await ctx.keys.knows(value)
    parsed = parse_key(value)
    key = ctx.keys.keys.get(parsed[0]) if parsed else None
    if key is None or not key.matches(parsed[1] if parsed else ""):
        raise ApiError(401, "the API key is unknown or revoked")
    return Principal.from_key(key)


async def principal(request: Request) -> Principal:
    """Who is asking: an API key's holder, or an OIDC token's subject."""
    ctx = context(request)
    found = credential(request)
    if found is None:
        raise ApiError(401, "send an API key (X-API-Key or Authorization: Bearer) "
                            "or an OIDC bearer token")
    kind, value = found
    if kind == "apikey":
        return await key_principal(ctx, value)
    verifier = ctx.verifier
    if verifier is None:
        raise ApiError(401, "OIDC is not configured here; use an API key")
    try:
        claims = await verifier.claims(value)
    except ValueError as exc:
        raise ApiError(401, f"the token is not valid: {exc}") from None
    who = Principal.from_claims(claims, roles_claim=verifier.roles_claim,
                                prefix=verifier.role_prefix)
    if who is None:
        raise ApiError(403, f"the token carries no aiart role in {verifier.roles_claim} "
                            f"({verifier.role_prefix}viewer, {verifier.role_prefix}deployer "
                            f"or {verifier.role_prefix}admin)")
    return who


def allow(who: Principal, role: Role, model: str | None = None) -> None:
    if not who.may(role, model):
        what = f" on model {model!r}" if model else ""
        raise ApiError(403, f"{who.subject} may not do this{what}: it needs role "
                            f"{role.value} (has {who.role.value})")


def model_name(request: Request) -> str:
    name = str(request.path_params["name"])
    if not DNS_LABEL.match(name):
        raise ApiError(400, f"{name!r} is not a model name")
    return name


async def list_models(request: Request) -> Response:
    who = await principal(request)
    allow(who, Role.VIEWER)
    views = model_views(await context(request).cluster.list_model_configs())
    return JSONResponse({"models": [v for v in views if who.may(Role.VIEWER, v["name"])]})


async def get_model(request: Request) -> Response:
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.VIEWER, name)
    views = model_views(await context(request).cluster.list_model_configs(name))
    if not views:
        raise ApiError(404, f"no model {name!r} is declared")
    return JSONResponse(views[0])


async def read_upload(request: Request, limit: int) -> tuple[bytes, bytes | None, str | None]:
    """The manifest, and the artifact with its file name, of a deployment's
    multipart body, refused (413) past ``limit`` while it arrives."""
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit + MAX_MANIFEST_BYTES:
        raise ApiError(413, f"the request is larger than {limit} bytes")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "send multipart/form-data with a manifest part and an "
                            "optional artifact part")
    # The body is counted as it arrives: a request that says nothing of its
    # length (chunked) or lies about it is cut off at the limit, not spooled
    # to disk whole first.
    limited = Request(request.scope, _limited_receive(request.receive,
                                                      limit + MAX_MANIFEST_BYTES))
    async with limited.form(max_files=2, max_fields=4,
                            max_part_size=MAX_MANIFEST_BYTES) as form:
        manifest_part, artifact_part = form.get("manifest"), form.get("artifact")
        if manifest_part is None:
            raise ApiError(400, "the manifest part is missing")
        manifest = (await manifest_part.read() if isinstance(manifest_part, UploadFile)
                    else str(manifest_part).encode())
        if len(manifest) > MAX_MANIFEST_BYTES:
            raise ApiError(413, f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
        if not isinstance(artifact_part, UploadFile):
            return manifest, None, None
        if (artifact_part.size or 0) > limit:
            raise ApiError(413, f"the artifact is larger than {limit} bytes")
        return manifest, await artifact_part.read(), artifact_part.filename


async def deploy(request: Request) -> Response:
    ctx = context(request)
    cluster = ctx.cluster
    who = await principal(request)
    allow(who, Role.DEPLOYER)
    manifest, artifact, filename = await read_upload(request, ctx.max_upload_bytes)
    try:
        upload = plan_upload(manifest, artifact, filename)
    except ManifestError as exc:
        raise ApiError(400, "the manifest is not valid", problems=list(exc.problems)) from None
    name, version = upload.manifest.metadata.name, upload.manifest.metadata.version
    allow(who, Role.DEPLOYER, name)
    # A deployer reaches its own model's artifacts only; an uploaded artifact
    # is kept where it belongs, so only references are checked.
    problems = reference_problems(who, upload.manifest)
    if upload.artifact_config is None and upload.artifact_key is None:
        ref = upload.manifest.spec.artifact.ref if upload.manifest.spec.artifact else None
        referenced = await cluster.get_config(ref.name) if isinstance(ref, ConfigRef) else None
        problem = config_reference_problem(who, upload.manifest, referenced, L.ARTIFACT_OF)
        problems += [problem] if problem else []
    if problems:
        raise ApiError(403, f"{who.subject} may only use model {name}'s own artifacts and "
                            "image", problems=problems)
    if await cluster.get_config(upload.config_name) is not None or any(
            version_view(c)["version"] == version
            for c in await cluster.list_model_configs(name)):
        raise ApiError(409, f"{name} version {version} exists; a new version needs a new "
                            "metadata.version (or remove this one first)")
    if upload.artifact_key is not None:
        if ctx.store is None:
            raise ApiError(413, "an artifact over 500 KB needs the object store, and none "
                                "is configured")
        assert artifact is not None
        await ctx.store.ensure_bucket(bucket_for(name))
        await ctx.store.put(bucket_for(name), upload.artifact_key, artifact,
                            metadata={"sha256": upload.artifact_sha256 or ""})
    if upload.artifact_config is not None and await cluster.get_config(
            upload.artifact_config) is None:
        assert artifact is not None
        await cluster.create_config(upload.artifact_config, artifact, {
            L.ARTIFACT_OF: name, L.VERSION: version, L.MANAGED_BY: L.MANAGED_BY_VALUE})
    await cluster.create_config(upload.config_name, upload.manifest_bytes, {
        L.MODEL: name, L.CREATED_BY: who.subject})
    log.info("deploy %s:%s by %s", name, version, who.subject)
    return JSONResponse({"name": name, "version": version, "config": upload.config_name,
                         "artifact": upload.manifest.spec.artifact.uri
                         if upload.manifest.spec.artifact else None,
                         "status": "Pending", "statusUrl": f"{PREFIX}/models/{name}"},
                        status_code=202)


async def remove(request: Request) -> Response:
    cluster = context(request).cluster
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.DEPLOYER, name)
    version = request.path_params.get("version")
    configs = [c for c in await cluster.list_model_configs(name)
               if version is None or version_view(c)["version"] == version]
    if not configs:
        what = f"{name} version {version}" if version else f"model {name}"
        raise ApiError(404, f"no {what} is declared")
    removed = []
    for config in configs:
        if await cluster.delete_config(config.id):
            removed.append(config.name)
    # The artifacts the API stored for these versions go with them.
    versions = {version_view(c)["version"] for c in configs}
    for config in await cluster.list_configs(f"{L.ARTIFACT_OF}={name}"):
        if config.labels.get(L.VERSION) in versions:
            await cluster.delete_config(config.id)
    log.info("remove %s by %s: %s", name, who.subject, ", ".join(removed))
    return JSONResponse({"removed": removed})


async def model_logs(request: Request) -> Response:
    cluster = context(request).cluster
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.VIEWER, name)
    tail = request.query_params.get("tail", "100")
    if not tail.isdigit() or not 1 <= int(tail) <= 10_000:
        raise ApiError(400, "tail must be a number of lines from 1 to 10000")
    views = model_views(await cluster.list_model_configs(name))
    if not views:
        raise ApiError(404, f"no model {name!r} is declared")
    version = request.query_params.get("version") or next(
        (v["version"] for v in views[0]["versions"] if v["current"]),
        views[0]["versions"][-1]["version"])
    services = [s for s in await cluster.list_services(name)
                if s.name == service_name(name, str(version))]
    if not services:
        raise ApiError(404, f"{name} version {version} has no service (yet)")
    text = await cluster.service_logs(services[0].id, int(tail))
    return JSONResponse({"name": name, "version": version, "lines": text.splitlines()})


async def model_metrics(request: Request) -> Response:
    """The model's request rate, server errors and latency (p50, p99) over
    the last ``minutes`` (60 unless asked), from Prometheus."""
    ctx = context(request)
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.VIEWER, name)
    minutes = request.query_params.get("minutes", "60")
    if not minutes.isdigit() or not 1 <= int(minutes) <= charts.MAX_MINUTES:
        raise ApiError(400, f"minutes must be a number from 1 to {charts.MAX_MINUTES}")
    if not await ctx.cluster.list_model_configs(name):
        raise ApiError(404, f"no model {name!r} is declared")
    if ctx.charts is None:
        raise ApiError(503, "no Prometheus is configured for the API "
                            "(AIART_API_PROMETHEUS_URL)")
    try:
        figures = await ctx.charts.model(name, int(minutes))
    except (httpx.HTTPError, RuntimeError, ValueError, KeyError) as exc:
        raise ApiError(503, f"Prometheus cannot be read: {exc}") from None
    return JSONResponse({"name": name, **figures})


async def infer(request: Request) -> Response:
    """An inference call passed to the model through the gateway with the
    caller's own credential, for the dashboard, whose page cannot read the
    key it signed in with: the model's own rules (its auth mode, the key's
    scope, rate limits) decide, as for a direct call."""
    return await pass_to_model(request, "infer")


async def metadata(request: Request) -> Response:
    """The model's metadata (the protocol's inputs and outputs), passed as ``infer``."""
    return await pass_to_model(request, "")


async def pass_to_model(request: Request, path: str) -> Response:
    ctx = context(request)
    found = credential(request)
    name = model_name(request)
    version = request.query_params.get("version") or None
    if version is not None and not DNS_LABEL.match(version):
        raise ApiError(400, f"{version!r} is not a version")
    if ctx.passer is None:
        raise ApiError(503, "the API passes no inference calls here (AIART_API_GATEWAY_URL)")
    body = await request.body()
    if len(body) > MAX_PASSED_BYTES:
        raise ApiError(413, f"a call through the API is at most {MAX_PASSED_BYTES} bytes; "
                            "call the model's endpoint")
    headers = {"Content-Type": request.headers.get("content-type", "application/json")}
    # The host the caller reached the gateway by: routes may answer it alone.
    if request.headers.get("host"):
        headers["Host"] = request.headers["host"]
    if found is not None:
        kind, value = found
        if kind == "apikey":
            headers["X-API-Key"] = value
        else:
            headers["Authorization"] = f"Bearer {value}"
    try:
        answer = await ctx.passer.call(request.method, name, version, path, body, headers)
    except httpx.HTTPError as exc:
        raise ApiError(502, f"the gateway cannot be reached: {exc}") from None
    return Response(answer.content, status_code=answer.status_code,
                    media_type=answer.headers.get("content-type", "application/json"))


def _store(request: Request) -> Store:
    return _store_of(context(request))


def _store_of(ctx: ApiContext) -> Store:
    if ctx.store is None:
        raise ApiError(503, "no object store is configured for the API")
    return ctx.store


async def model_runs(request: Request) -> Response:
    """The training runs in the model's bucket, newest first, with their
    metrics and parameters (docs/storage.md)."""
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.VIEWER, name)
    store = _store(request)
    out = []
    for record in reversed((await list_runs(store, name))[-MAX_RUNS_SHOWN:]):
        run = json.loads(record.to_json())
        for part, there in (("metrics", record.has_metrics), ("params", record.has_params)):
            run[part] = None
            if there:
                try:
                    run[part] = json.loads(await store.get(
                        bucket_for(name), f"{run_prefix(record.run_id)}{part}.json"))
                except (ObjectMissing, ValueError):
                    pass  # written by hand since, or gone: shown as none
        out.append(run)
    return JSONResponse({"name": name, "runs": out})


async def upload_model_run(request: Request) -> Response:
    """A training run stored in the model's bucket (multipart: ``model``, the
    trained file; ``metrics`` and ``params``, JSON objects), as ``aiart runs
    upload`` stores one; deploy from it with ``run://<model>/<id>``."""
    ctx = context(request)
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.DEPLOYER, name)
    store = _store(request)
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise ApiError(415, "send multipart/form-data with a model part, and optionally "
                            "metrics and params (JSON objects)")
    limit = ctx.max_upload_bytes + 2 * MAX_MANIFEST_BYTES
    limited = Request(request.scope, _limited_receive(request.receive, limit))
    async with limited.form(max_files=3, max_fields=3, max_part_size=MAX_MANIFEST_BYTES) as form:
        part = form.get("model")
        if not isinstance(part, UploadFile) or not part.filename:
            raise ApiError(400, "the model part (a file) is missing")
        if (part.size or 0) > ctx.max_upload_bytes:
            raise ApiError(413, f"the model file is larger than {ctx.max_upload_bytes} bytes")
        figures: dict[str, dict[str, Any] | None] = {}
        for what in ("metrics", "params"):
            value = form.get(what)
            text = (await value.read()).decode("utf-8", "replace") \
                if isinstance(value, UploadFile) else str(value or "")
            try:
                parsed = json.loads(text) if text.strip() else None
            except ValueError as exc:
                raise ApiError(400, f"{what} is not JSON: {exc}") from None
            if parsed is not None and not isinstance(parsed, dict):
                raise ApiError(400, f"{what} must be a JSON object")
            figures[what] = parsed
        try:
            record = await store_run(store, name, part.filename, await part.read(),
                                     metrics=figures["metrics"], params=figures["params"])
        except RunError as exc:
            raise ApiError(400, str(exc)) from None
    log.info("run %s of %s stored by %s", record.run_id, name, who.subject)
    return JSONResponse({**json.loads(record.to_json()),
                         "uri": f"run://{name}/{record.run_id}"}, status_code=201)


async def list_objects(request: Request) -> Response:
    """The keys in the model's bucket under ``prefix``: for its deployers,
    since the bucket holds its payload logs (callers' requests)."""
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.DEPLOYER, name)
    prefix = request.query_params.get("prefix", "")
    if prefix and not OBJECT_KEY.match(prefix):
        raise ApiError(400, f"{prefix!r} is not a key prefix")
    try:
        keys = sorted(await _store(request).list(bucket_for(name), prefix))
    except ObjectMissing:
        keys = []  # no bucket yet
    return JSONResponse({"name": name, "bucket": bucket_for(name), "prefix": prefix,
                         "objects": keys[:MAX_OBJECTS_LISTED],
                         "truncated": len(keys) > MAX_OBJECTS_LISTED})


async def get_object(request: Request) -> Response:
    """One object of the model's bucket, as a download (its deployers)."""
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.DEPLOYER, name)
    key = str(request.path_params["key"])
    if not OBJECT_KEY.match(key):
        raise ApiError(400, f"{key!r} is not an object key")
    try:
        data = await _store(request).get(bucket_for(name), key)
    except ObjectMissing:
        raise ApiError(404, f"s3://{bucket_for(name)}/{key} does not exist") from None
    except ObjectTooLarge as exc:
        raise ApiError(413, f"{exc}; read it with an S3 client") from None
    filename = re.sub(r"[^A-Za-z0-9._-]", "_", key.rsplit("/", 1)[-1]) or "object"
    return Response(data, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})


async def rollout_command(request: Request) -> Response:
    """Promote or abort the model's rollout in progress: a label on the new
    version's config, which the operator acts on at its next pass and then
    removes (docs/rollouts.md)."""
    cluster = context(request).cluster
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.DEPLOYER, name)
    action = str(request.path_params["action"])
    if action not in rollout.COMMANDS:
        raise ApiError(404, f"a rollout is moved with {' or '.join(rollout.COMMANDS)}, "
                            f"not {action!r}")
    configs = await cluster.list_model_configs(name)
    if not configs:
        raise ApiError(404, f"no model {name!r} is declared")
    under_way = [c for c in sorted(configs, key=lambda c: c.created_at)
                 if (state := rollout.read_state(c.labels)) is not None and not state.done]
    if not under_way:
        raise ApiError(409, f"model {name} has no rollout in progress")
    config = under_way[-1]
    updated = await cluster.update_config_labels(
        config, {**config.labels, rollout.COMMAND: action})
    if updated is None:
        raise ApiError(409, f"{config.name} changed meanwhile; ask again")
    version = version_view(config)["version"]
    log.info("rollout %s of %s version %s by %s", action, name, version, who.subject)
    return JSONResponse({"name": name, "version": version, "command": action,
                         "statusUrl": f"{PREFIX}/models/{name}"}, status_code=202)


def job_id_of(request: Request) -> str:
    job_id = str(request.path_params["id"])
    if not jobs.JOB_ID.match(job_id):
        raise ApiError(400, f"{job_id!r} is not a job id")
    return job_id


async def _job_config(request: Request, job_id: str) -> ConfigObject:
    config = await context(request).cluster.get_config(jobs.config_name(job_id))
    if config is None or config.labels.get(L.JOB) != job_id:
        raise ApiError(404, f"no batch job {job_id!r}")
    return config


async def start_job(request: Request) -> Response:
    """Declare a batch job (a labelled config, core/jobs.py); the operator runs it."""
    ctx = context(request)
    who = await principal(request)
    allow(who, Role.DEPLOYER)
    body = await request.body()
    try:
        spec = jobs.parse_job(body)
    except jobs.JobError as exc:
        raise ApiError(400, str(exc)) from None
    allow(who, Role.DEPLOYER, spec.model)
    versions = [version_view(c)["version"]
                for c in await ctx.cluster.list_model_configs(spec.model)]
    if not versions:
        raise ApiError(404, f"no model {spec.model!r} is declared")
    if spec.version is not None and spec.version not in versions:
        raise ApiError(404, f"model {spec.model} has no version {spec.version} "
                            f"(it has {', '.join(versions)})")
    if ctx.store is not None:
        found = [k for k in await ctx.store.list(bucket_for(spec.model), spec.prefix)
                 if k.endswith(FORMATS)]
        if not found:
            raise ApiError(400, f"no input under {spec.input} (files ending in "
                                f"{', '.join(FORMATS)})")
    job_id = jobs.new_job_id(spec.model, datetime.now(UTC))
    await ctx.cluster.create_config(
        jobs.config_name(job_id),
        yaml.safe_dump(spec.model_dump(exclude_none=True), sort_keys=False).encode(),
        jobs.job_labels(job_id, spec.model, who.subject))
    log.info("batch job %s on %s by %s", job_id, spec.model, who.subject)
    view = job_view(await _job_config(request, job_id))
    return JSONResponse({**view, "statusUrl": f"{PREFIX}/jobs/{job_id}"}, status_code=202)


async def list_jobs(request: Request) -> Response:
    who = await principal(request)
    allow(who, Role.VIEWER)
    model = request.query_params.get("model")
    views = [job_view(c) for c in sorted(
        await context(request).cluster.list_configs(L.JOB), key=lambda c: c.created_at)]
    return JSONResponse({"jobs": [v for v in views if who.may(Role.VIEWER, v["model"])
                                  and (model is None or v["model"] == model)]})


async def get_job(request: Request) -> Response:
    who = await principal(request)
    config = await _job_config(request, job_id_of(request))
    allow(who, Role.VIEWER, config.labels.get(L.JOB_OF, ""))
    return JSONResponse(job_view(config))


async def remove_job(request: Request) -> Response:
    """Remove a job's config: the operator stops it if it runs; its results
    stay in the model's bucket."""
    who = await principal(request)
    config = await _job_config(request, job_id_of(request))
    allow(who, Role.DEPLOYER, config.labels.get(L.JOB_OF, ""))
    await context(request).cluster.delete_config(config.id)
    log.info("batch job %s removed by %s", config.labels.get(L.JOB), who.subject)
    return JSONResponse({"removed": [config.name]})


async def model_events(request: Request) -> Response:
    """What happened to the model's versions, newest first: each status the
    operator recorded in the catalog (a change's parse, build, push, deploy
    and probe, a rollout's steps, a failure and its reason), at most
    ``MAX_EVENTS``."""
    ctx = context(request)
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.VIEWER, name)
    if ctx.catalog is None:
        raise ApiError(503, "the catalog is not configured here")
    events = [{"at": event.at, "version": record.version, "status": event.status,
               "message": event.message}
              for record in await ctx.catalog.find(Query(name=name))
              for event in record.history]
    events.sort(key=lambda e: e["at"], reverse=True)
    return JSONResponse({"name": name, "events": events[:MAX_EVENTS]})


def _registry(ctx: ApiContext) -> RegistryReader:
    if ctx.registry is None:
        raise ApiError(503, "the API is not given the registry here (AIART_API_REGISTRY_URL)")
    return ctx.registry


async def _images_in_use(ctx: ApiContext, name: str) -> set[str]:
    """What runs or may run again without a build: every service's image of
    the model (its versions', asleep ones too, and its batch jobs'), and
    each declared version's last image."""
    services = [*await ctx.cluster.list_services(name),
                *[s for s in await ctx.cluster.list_job_services()
                  if s.labels.get(L.JOB_OF) == name]]
    images = [str(((s.spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get(
        "Image", "")) for s in services]
    images += [c.labels.get(L.STATUS_IMAGE, "") for c in
               await ctx.cluster.list_model_configs(name)]
    return images_in_use(images)


async def list_images(request: Request) -> Response:
    """The model's images in aiart's registry: tags, digest, size, age, and
    whether anything runs it."""
    ctx = context(request)
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.VIEWER, name)
    repository = model_repository(name)
    tagged = await _registry(ctx).images(repository)
    return JSONResponse({"name": name, "repository": repository,
                         "images": image_views(tagged, await _images_in_use(ctx, name))})


async def remove_image(request: Request) -> Response:
    """Remove one of the model's images (every tag of it) that nothing runs."""
    ctx = context(request)
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.DEPLOYER, name)
    digest = str(request.path_params["digest"])
    if not IMAGE_DIGEST.match(digest):
        raise ApiError(400, f"{digest!r} is not an image digest (sha256:<64 hex>)")
    if digest in await _images_in_use(ctx, name):
        raise ApiError(409, f"{digest} is in use by {name}: remove the version that runs it "
                            "first")
    try:
        await _registry(ctx).delete(model_repository(name), digest)
    except ObjectMissing as exc:
        raise ApiError(404, str(exc)) from None
    log.info("image %s@%s removed by %s", model_repository(name), digest, who.subject)
    return JSONResponse({"removed": digest})


# A model package up to this size stays in memory on its way through the
# API; a larger one goes to a temporary file.
SPOOL_BYTES = 16 * 1024 * 1024


class _ReadableConfigs:
    """The engine as the API's proxy lets it read configs: one named alone
    comes back without its data, a list filtered by an aiart label with it.
    A model's artifact config (uploaded through aiart, labelled with the
    model) is read from the list of the model's artifacts; any other
    config's data the API cannot read."""

    def __init__(self, cluster: ApiCluster) -> None:
        self.cluster = cluster

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster, name)

    async def get_config(self, name: str) -> ConfigObject | None:
        found = await self.cluster.get_config(name)
        if found is None or found.data:
            return found
        model = found.labels.get(L.ARTIFACT_OF, "")
        listed = [c for c in await self.cluster.list_configs(f"{L.ARTIFACT_OF}={model}")
                  if c.name == name] if model else []
        if not listed:
            raise ApiError(409, f"the API may not read config {name}'s data (only model files "
                                "uploaded through aiart): use aiart export or aiart import "
                                "on a manager")
        return listed[0]


async def export_package(request: Request) -> Response:
    """One version of the model (``?version=``; the one serving without it)
    as a model package, signed with the site's key when it has one
    (docs/packages.md): for the model's deployers, since it holds the model
    file."""
    ctx = context(request)
    who = await principal(request)
    name = model_name(request)
    allow(who, Role.DEPLOYER, name)
    version = request.query_params.get("version", "")

    def store() -> Store:
        return _store(request)
    # Made into a temporary file (in memory while small) and sent from it: an
    # image of gigabytes is never held whole.
    spooled = tempfile.SpooledTemporaryFile(SPOOL_BYTES)
    try:
        made = await transfer.export_version(
            _ReadableConfigs(ctx.cluster), _registry(ctx), store, name, version,
            ctx.package_key, spooled)
    except BaseException:
        spooled.close()
        raise
    spooled.seek(0)
    log.info("%s:%s exported by %s (%s)", made.name, made.version, who.subject,
             f"signed {made.signer}" if made.signer else "unsigned")

    def chunks() -> Iterator[bytes]:
        with spooled:
            while part := spooled.read(1 << 20):
                yield part
    return StreamingResponse(chunks(), media_type="application/x-tar", headers={
        "Content-Disposition": f'attachment; filename="{made.name}-{made.version}.aiart"',
        "Content-Length": str(made.size),
        "X-Aiart-Package-Signer": made.signer or "unsigned"})


async def import_package(request: Request) -> Response:
    """A model package (the request's body) checked and its version declared
    here with its image and model file: for the deployers of the model it
    holds; an unsigned one only for admins who say so (``?allowUnsigned=true``)."""
    ctx = context(request)
    who = await principal(request)
    allow(who, Role.DEPLOYER)
    unsigned = request.query_params.get("allowUnsigned", "").lower() == "true"
    if unsigned:
        allow(who, Role.ADMIN)
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > ctx.max_upload_bytes:
        raise ApiError(413, f"the package is larger than {ctx.max_upload_bytes} bytes")
    # Kept in a temporary file as it arrives (in memory while small), and
    # read where it is: an image of gigabytes is never held whole.
    package = tempfile.SpooledTemporaryFile(SPOOL_BYTES)
    with package:
        async for chunk in Request(request.scope, _limited_receive(
                request.receive, ctx.max_upload_bytes)).stream():
            package.write(chunk)
        package.seek(0)
        return await _import(ctx, who, package, unsigned)


async def _import(ctx: ApiContext, who: Principal, package: IO[bytes],
                  unsigned: bool) -> Response:

    def authorize(model: str) -> None:
        allow(who, Role.DEPLOYER, model)

    def store() -> Store:
        return _store_of(ctx)
    try:
        done = await transfer.import_package(
            _ReadableConfigs(ctx.cluster), _registry(ctx), store, package,
            allow_unsigned=unsigned, created_by=who.subject, authorize=authorize)
    except PackageError as exc:
        raise ApiError(400, f"the package is refused: {exc}") from None
    answer = {"name": done.name, "version": done.version, "signer": done.signer,
              "declared": done.declared, "image": done.image, "package": dict(done.origin),
              "imageBytes": dict(done.moved)}
    if not done.declared:
        return JSONResponse({**answer, "message": "declared here already, as the package "
                                                  "has it: nothing to do"})
    log.info("%s:%s imported by %s (%s)", done.name, done.version, who.subject,
             f"signed by {done.signer}" if done.signer else "unsigned")
    return JSONResponse(answer, status_code=201)


async def list_keys(request: Request) -> Response:
    """Every API key's record (admins): names, roles, models, never a secret."""
    ctx = context(request)
    allow(await principal(request), Role.ADMIN)
    return JSONResponse({"keys": [key_view(k) for k in await KeyStore(ctx.cluster).keys()]})


async def create_key(request: Request) -> Response:
    """A viewer's or deployer's key (admins), its text in the answer alone:
    only its digest is kept."""
    ctx = context(request)
    who = await principal(request)
    allow(who, Role.ADMIN)
    store = KeyStore(ctx.cluster)
    try:
        name, role, models = key_request(await request.body(),
                                         (k.name for k in await store.keys()))
        text, record = new_key(name, role, models)
    except (ValueError, AccessError) as exc:
        raise ApiError(400, str(exc)) from None
    await store.add(record)
    await ctx.keys.refresh()  # usable here at once; the auth service reads within a second
    log.info("key %s (%s, %s) created by %s", record.name, record.id, record.role.value,
             who.subject)
    return JSONResponse({"key": text, **key_view(record)}, status_code=201)


async def revoke_key(request: Request) -> Response:
    """Revoke a viewer's or deployer's key (admins): the gateway refuses it
    within a second or two."""
    ctx = context(request)
    who = await principal(request)
    allow(who, Role.ADMIN)
    key_id = str(request.path_params["id"])
    found = [k for k in await KeyStore(ctx.cluster).keys() if k.id == key_id]
    if not found:
        raise ApiError(404, f"no key has id {key_id!r}")
    key = found[0]
    if key.role is Role.ADMIN:
        raise ApiError(403, f"{key.name} is an admin's key: revoke it on a manager, with "
                            f"aiart keys revoke {key.id}")
    if key_view(key)["managedByAiart"]:
        raise ApiError(403, f"{key.name} is a key aiart made for a stream's bridge: it goes "
                            "with its stream")
    config = await ctx.cluster.get_config(f"{KEY_PREFIX}{key.id}")
    if config is None or not await ctx.cluster.delete_config(config.id):
        raise ApiError(404, f"no key has id {key_id!r}")
    await ctx.keys.refresh()
    log.info("key %s (%s) revoked by %s", key.name, key.id, who.subject)
    return JSONResponse({"revoked": key_view(key)})


async def openapi(_: Request) -> Response:
    return JSONResponse(openapi_document())


def guarded(handler: Callable[[Request], Awaitable[Response]]
            ) -> Callable[[Request], Awaitable[Response]]:
    """The handler, its refusals turned into JSON errors."""
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return error(exc.status, exc.message, **exc.extra)
        except HTTPException as exc:  # Starlette's own, e.g. a malformed multipart body
            return error(exc.status_code, str(exc.detail))
        except (TransientError, PermanentError) as exc:
            return error(503 if isinstance(exc, TransientError) else 400, str(exc))
    return run


ROUTES = [
    Route(f"{PREFIX}/openapi.json", openapi),
    Route(f"{PREFIX}/models", guarded(list_models), methods=["GET"]),
    Route(f"{PREFIX}/models", guarded(deploy), methods=["POST"]),
    Route(f"{PREFIX}/models/{{name}}", guarded(get_model), methods=["GET"]),
    Route(f"{PREFIX}/models/{{name}}", guarded(remove), methods=["DELETE"]),
    Route(f"{PREFIX}/models/{{name}}/versions/{{version}}", guarded(remove), methods=["DELETE"]),
    Route(f"{PREFIX}/models/{{name}}/logs", guarded(model_logs), methods=["GET"]),
    Route(f"{PREFIX}/models/{{name}}/metrics", guarded(model_metrics), methods=["GET"]),
    Route(f"{PREFIX}/models/{{name}}/runs", guarded(model_runs), methods=["GET"]),
    Route(f"{PREFIX}/models/{{name}}/runs", guarded(upload_model_run), methods=["POST"]),
    Route(f"{PREFIX}/models/{{name}}/objects", guarded(list_objects), methods=["GET"]),
    Route(f"{PREFIX}/models/{{name}}/objects/{{key:path}}", guarded(get_object),
          methods=["GET"]),
    Route(f"{PREFIX}/models/{{name}}/infer", guarded(infer), methods=["POST"]),
    Route(f"{PREFIX}/models/{{name}}/metadata", guarded(metadata), methods=["GET"]),
    Route(f"{PREFIX}/models/{{name}}/rollout/{{action}}", guarded(rollout_command),
          methods=["POST"]),
    Route(f"{PREFIX}/models/{{name}}/events", guarded(model_events), methods=["GET"]),
    Route(f"{PREFIX}/models/{{name}}/images", guarded(list_images), methods=["GET"]),
    Route(f"{PREFIX}/models/{{name}}/images/{{digest}}", guarded(remove_image),
          methods=["DELETE"]),
    Route(f"{PREFIX}/models/{{name}}/package", guarded(export_package), methods=["GET"]),
    Route(f"{PREFIX}/packages", guarded(import_package), methods=["POST"]),
    Route(f"{PREFIX}/keys", guarded(list_keys), methods=["GET"]),
    Route(f"{PREFIX}/keys", guarded(create_key), methods=["POST"]),
    Route(f"{PREFIX}/keys/{{id}}", guarded(revoke_key), methods=["DELETE"]),
    Route(f"{PREFIX}/jobs", guarded(list_jobs), methods=["GET"]),
    Route(f"{PREFIX}/jobs", guarded(start_job), methods=["POST"]),
    Route(f"{PREFIX}/jobs/{{id}}", guarded(get_job), methods=["GET"]),
    Route(f"{PREFIX}/jobs/{{id}}", guarded(remove_job), methods=["DELETE"]),
]


async def not_found(_: Request, exc: Exception) -> Response:
    return error(getattr(exc, "status_code", 404), str(getattr(exc, "detail", "not found")))


def create_app(cluster: ApiCluster, store: Store | None, keys: KeyCache,
               verifier: TokenVerifier | None, *,
               max_upload_bytes: int = 512 * 1024**2,
               charts: PrometheusCharts | None = None, passer: GatewayPasser | None = None,
               catalog: Catalog | None = None, registry: RegistryReader | None = None,
               package_key: Ed25519PrivateKey | None = None,
               pages: Sequence[BaseRoute] = ()) -> Starlette:
    """The API; with ``pages``, the dashboard's (aiart/ui) beside it, which
    call these same handlers."""
    app = Starlette(routes=[*ROUTES, *pages],
                    exception_handlers={404: not_found, 405: not_found})
    app.state.api = ApiContext(cluster=cluster, store=store, keys=keys, verifier=verifier,
                               max_upload_bytes=max_upload_bytes, charts=charts,
                               passer=passer, catalog=catalog or DockerCatalog(cluster),
                               registry=registry, package_key=package_key)
    return app


def from_settings(settings: ServiceSettings) -> dict[str, Any]:
    """Where the API reads charts and images and passes inference calls, as
    configured: create_app's ``charts``, ``passer`` and ``registry``."""
    def secret(path: str) -> str | None:
        return Path(path).read_text().strip() if path else None
    return {
        "charts": PrometheusCharts(settings.api_prometheus_url,
                                   secret(settings.api_monitoring_password_file))
        if settings.api_prometheus_url else None,
        "passer": GatewayPasser(settings.api_gateway_url) if settings.api_gateway_url else None,
        "registry": RegistryReader(settings.api_registry_url,
                                   secret(settings.api_registry_password_file),
                                   settings.api_registry_ca_file or None)
        if settings.api_registry_url else None,
        "package_key": load_private_key(Path(settings.api_package_key_file).read_bytes())
        if settings.api_package_key_file else None,
    }
