"""``reconcile_model``: one level-triggered pass over one model's versions.

It re-reads live state, parses every config, renders the desired services,
acts only on a difference and writes status only when it changed; running it
twice in a row changes nothing. Work for one version never blocks another.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.context import Context

from aiart.build.kinds import kind_of
from aiart.build.recipes import (
    ModelRecipe,
    RuntimeRecipe,
)
from aiart.catalog.records import HISTORY_LIMIT, Catalog, Deployment, deployment_key, now
from aiart.control import change_trace
from aiart.control.artifacts import Fetched, fetch_artifact
from aiart.control.metrics import ModelStates, VersionState, version_state
from aiart.control.ports import Builder, Cluster, GatewayProbe
from aiart.core import labels as L
from aiart.core.errors import PermanentError, TransientError
from aiart.core.objects import ConfigObject, ServiceObject
from aiart.core.plan import VersionPlan, choose_current, plan_versions
from aiart.core.render import (
    StoreAccess,
    carries_current_route,
    model_settings,
    render_service,
)
from aiart.core.settings import Settings
from aiart.core.spec import Manifest, Runtime
from aiart.core.status import Phase, Status, read_status, status_from_labels, status_labels
from aiart.core.store_layout import artifact_key, bucket_for, manifest_key
from aiart.store.client import Store
from aiart.store.policy import access_key_for, key_secret_name, secret_for

log = logging.getLogger("aiart.reconcile")
POLL_SECONDS = 1.0
DEPENDENCY_RETRY_SECONDS = 10.0
CONTRACT_GRACE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Outcome:
    requeue_after: float | None
    transient: str | None = None


@dataclass(frozen=True, slots=True)
class Deps:
    cluster: Cluster
    builder: Builder
    gateway: GatewayProbe
    settings: Settings
    store: Store | None = None
    catalog: Catalog | None = None
    # What this process has already written to the store and the catalog, so
    # that periodic passes do not repeat it; lost on restart, and then
    # redone once (both writes are idempotent).
    written: dict[str, str] = field(default_factory=dict)
    # Status events the catalog could not take yet, by deployment key.
    unrecorded: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    # Each model's state for Prometheus, as its labels were at the last pass.
    models: ModelStates | None = None
    # The trace of each version's change in progress, by config id.
    traces: dict[str, Context] = field(default_factory=dict)
    # The store gateway's key, which models' own store keys derive from
    # (None: no model gets the store).
    store_gateway_key: bytes | None = None


@dataclass(frozen=True, slots=True)
class Prepared:
    """A version's inputs resolved to an image: what to deploy, and how to build it."""

    image: str
    inputs: str  # a hash of everything the image is made from
    recipe: ModelRecipe | None = None  # None: a ready image, nothing to build
    runtime: RuntimeRecipe | None = None
    artifact: Fetched | None = None


async def prepare(deps: Deps, plan: VersionPlan) -> Prepared:
    """Read the artifact and pick the runtime; PermanentError says what is wrong."""
    manifest = plan.manifest
    assert manifest is not None
    if manifest.spec.runtime is Runtime.IMAGE:
        assert manifest.spec.image is not None
        image = manifest.spec.image
        inputs = hashlib.sha256(f"{plan.config.id}\0{image}".encode()).hexdigest()[:16]
        return Prepared(image=image, inputs=inputs)
    artifact_ref = manifest.spec.artifact
    assert artifact_ref is not None
    artifact = await fetch_artifact(deps.cluster, deps.store, artifact_ref)
    kind = kind_of(manifest)
    runtime = kind.serve_with(deps.settings, manifest, artifact.data, artifact.name)
    runtime_tag = runtime if isinstance(runtime, str) else runtime.tag
    settings_file = model_settings(manifest, kind.artifact_file(manifest))
    recipe = ModelRecipe(
        name=manifest.metadata.name,
        version=manifest.metadata.version,
        runtime_image=runtime_tag,
        artifact_name=settings_file.artifact.name,
        artifact=artifact.data,
        settings_json=settings_file.to_json(),
        registry=deps.settings.registry,
    )
    inputs = hashlib.sha256(f"{plan.config.id}\0{recipe.tag}".encode()).hexdigest()[:16]
    return Prepared(image=recipe.tag, inputs=inputs, recipe=recipe,
                    runtime=None if isinstance(runtime, str) else runtime, artifact=artifact)


async def write_status(cluster: Cluster, config: ConfigObject, status: Status) -> ConfigObject:
    """Write ``status`` if it differs; return the config as it now is."""
    wanted = status_labels(config.labels, status)
    if wanted == dict(config.labels):
        return config
    updated = await cluster.update_config_labels(config, wanted)
    if updated is None:
        # Someone else wrote meanwhile (or the config is gone): the event that
        # caused brings us back with fresh state.
        raise TransientError(f"config {config.name} changed while its status was written")
    return updated


async def store_access(deps: Deps, manifest: Manifest) -> StoreAccess | None:
    """The endpoint and key secrets a model that asks for the store is given:
    keys of its own, for the store gateway, never the store's."""
    if not manifest.spec.store.credentials:
        return None
    settings = deps.settings
    if deps.store is None or not settings.model_store_endpoint or deps.store_gateway_key is None:
        raise PermanentError("spec.store.credentials: no store gateway is configured here "
                             "(AIART_S3_MODEL_ENDPOINT, AIART_STORE_GATEWAY_KEY_FILE); aiart "
                             "gives a model keys of its own, never the store's")
    model = manifest.metadata.name
    access_key = access_key_for(model)
    ids = []
    for what, value in (("access", access_key),
                        ("secret", secret_for(deps.store_gateway_key, access_key))):
        name = key_secret_name(model, what, value)
        secret_id = await deps.cluster.ensure_secret(
            name, value.encode(), {L.MANAGED_BY: L.MANAGED_BY_VALUE, L.MODEL: model})
        ids.append((secret_id, name))
    return StoreAccess(endpoint=settings.model_store_endpoint, secure=settings.store_secure,
                       access_key_secret=ids[0], secret_key_secret=ids[1])


async def set_status(deps: Deps, key: str, config: ConfigObject, status: Status) -> ConfigObject:
    """``write_status``, and a status event in the catalog when the status changed."""
    before = (config.labels.get(L.STATUS), config.labels.get(L.STATUS_MESSAGE))
    updated = await write_status(deps.cluster, config, status)
    after = (updated.labels.get(L.STATUS), updated.labels.get(L.STATUS_MESSAGE))
    if deps.catalog is not None and after != before:
        events = deps.unrecorded.setdefault(key, [])
        events.append((status.phase.value, after[1] or "", now()))
        del events[:-HISTORY_LIMIT]  # the catalog keeps no more than these either
        await flush_status_events(deps, key)
    return updated


async def flush_status_events(deps: Deps, key: str) -> None:
    """Write the status events the catalog has not taken yet, oldest first.

    The catalog is a record: serving goes on while it is down, and what it
    missed is written, with the times it happened, once it is back."""
    events = deps.unrecorded.get(key)
    if deps.catalog is None or not events:
        return
    while events:
        status, message, at = events[0]
        try:
            await deps.catalog.record_status(key, status, message, at)
        except Exception as exc:
            log.warning("catalog: cannot record the status of %s yet: %s", key, exc)
            return
        events.pop(0)
    deps.unrecorded.pop(key, None)


async def record_removal(deps: Deps, model: str, version: str, config_id: str) -> None:
    if deps.catalog is None:
        return
    try:
        await deps.catalog.record_status(deployment_key(model, version, config_id), "Removed",
                                         "the version's config was removed", now())
    except Exception as exc:
        log.warning("catalog: cannot record the removal of %s:%s: %s", model, version, exc)


async def record_deployment(deps: Deps, key: str, plan: VersionPlan, prepared: Prepared) -> None:
    """Put the version in the catalog (once per process and image)."""
    manifest = plan.manifest
    if deps.catalog is None or manifest is None:
        return
    memo = f"catalog:{key}"
    if deps.written.get(memo) == prepared.image:
        return
    artifact = prepared.artifact
    try:
        digest = await deps.cluster.image_digest(prepared.image) if prepared.recipe else ""
        await deps.catalog.record_deployment(Deployment(
            model=manifest.metadata.name, version=manifest.metadata.version,
            config_id=plan.config.id, runtime=manifest.spec.runtime.value,
            manifest=plan.config.data.decode("utf-8", errors="replace"),
            parameters=manifest.spec.model_dump(mode="json"),
            labels=dict(manifest.metadata.labels), image=prepared.image, image_digest=digest,
            artifact_uri=artifact.uri if artifact else "",
            artifact_sha256=artifact.sha256 if artifact else "",
            run_id=artifact.run_id if artifact else "",
            deployed_at=plan.config.created_at or now()))
    except Exception as exc:  # as above: logged, and tried again on the next pass
        log.warning("catalog: cannot record %s: %s", key, exc)
        return
    # Before its image is built the record has no digest yet: record again
    # on later passes until it has one.
    if digest or prepared.recipe is None:
        deps.written[memo] = prepared.image


async def archive(deps: Deps, plan: VersionPlan, prepared: Prepared) -> None:
    """Keep a served version's artifact and manifest in its model's bucket."""
    manifest = plan.manifest
    assert manifest is not None
    artifact = prepared.artifact
    if deps.store is None or artifact is None or prepared.recipe is None:
        return
    name, version = manifest.metadata.name, manifest.metadata.version
    memo = f"archive:{name}/{version}"
    if deps.written.get(memo) == artifact.sha256:
        return
    bucket = bucket_for(name)
    key = artifact_key(version, prepared.recipe.artifact_name)
    try:
        await deps.store.ensure_bucket(bucket)
        found = await deps.store.stat(bucket, key)
        if found is None or found[2].get("sha256") != artifact.sha256:
            await deps.store.put(bucket, key, artifact.data, metadata={
                "sha256": artifact.sha256, "source": artifact.uri})
            await deps.store.put(bucket, manifest_key(version), plan.config.data,
                                 content_type="application/yaml")
    except TransientError as exc:
        log.warning("cannot archive %s version %s in the object store yet: %s",
                    name, version, exc)
        return
    deps.written[memo] = artifact.sha256


def _endpoint(settings: Settings, name: str, version: str, current: bool) -> str:
    base = f"{settings.public_url}/models/{name}"
    return base if current else f"{base}/versions/{version}"


async def reconcile_model(deps: Deps, model: str) -> Outcome:
    cluster = deps.cluster
    configs = await cluster.list_model_configs(model)
    services = await cluster.list_services(model)
    plans = plan_versions(model, configs)
    if deps.models is not None:
        # As the labels were at the start of this pass: a status this pass
        # writes changes the config, and its event brings the next pass.
        states: dict[str, VersionState] = {}
        for plan in plans:
            # An invalid config has no version to trust: it goes by its name.
            version = plan.manifest.metadata.version if plan.manifest else plan.config.name
            states[version] = version_state(plan.config.labels, plan.manifest)
        deps.models.set_model(model, states)

    for plan in plans:
        if plan.manifest is None:
            await write_status(cluster, plan.config, Status(
                phase=Phase.INVALID, message="; ".join(plan.problems)))

    valid = [p for p in plans if p.manifest is not None]
    transient: str | None = None
    if not plans and deps.store is not None and any(
            s.labels.get(L.DELETE_BUCKET) == "true" for s in services):
        # The last version is gone and its manifest asked for its bucket to
        # go too. Before the services: a failure here is retried while the
        # services still say what to do.
        log.info("removing bucket %s with model %s", bucket_for(model), model)
        await deps.store.remove_bucket(bucket_for(model))
    owners = {p.config.id for p in valid}
    by_version: dict[str, ServiceObject] = {}
    for service in services:
        version = service.labels.get(L.VERSION, "")
        if service.labels.get(L.OWNER) not in owners and not any(
            p.manifest and p.manifest.metadata.version == version for p in valid
        ):
            log.info("removing %s: its config is gone", service.name)
            change_trace.settled(deps.traces, service.labels.get(L.OWNER, ""))
            await cluster.remove_service(service)
            await record_removal(deps, model, version, service.labels.get(L.OWNER, ""))
        else:
            by_version[version] = service

    if not plans and services:
        # The model is gone: so are the store keys its versions were given
        # (their services, which held them, were removed just above).
        await cluster.remove_model_secrets(model)

    versions = [p.manifest.metadata.version for p in valid if p.manifest]
    ready = set()
    for plan in valid:
        assert plan.manifest is not None
        version = plan.manifest.metadata.version
        if version in by_version:
            with change_trace.probe(deps.traces, plan.config.id):
                if await deps.gateway.version_ready(model, version):
                    ready.add(version)
    routed = {v for v, s in by_version.items() if carries_current_route(dict(s.labels))}
    served = await deps.gateway.current_version(model, sorted(routed)) if len(routed) > 1 or (
        routed and ready - routed) else None
    current, handing_over = choose_current(
        valid=versions, ready=ready, routed=routed, served=served)

    requeue: float | None = POLL_SECONDS if handing_over else None
    for plan in valid:
        assert plan.manifest is not None
        version = plan.manifest.metadata.version
        try:
            again = await reconcile_version(
                deps, plan, by_version.get(version), current=version in current,
                ready=version in ready,
            )
        except TransientError as exc:
            transient = str(exc)
            log.warning("%s version %s: %s; will retry", model, version, exc)
            # The pass may have written status already: start from the live config.
            fresh = await cluster.get_config(plan.config.id)
            if fresh is None:
                continue
            phase, _ = read_status(fresh.labels)
            keep = phase if phase in (Phase.PENDING, Phase.BUILDING, Phase.DEPLOYING) else (
                Phase.PENDING)
            await set_status(deps, deployment_key(model, version, fresh.id), fresh, Status(
                phase=keep, message=f"retrying after a temporary failure: {exc}",
                image=fresh.labels.get(L.STATUS_IMAGE, "")))
            continue
        if again is not None:
            requeue = again if requeue is None else min(requeue, again)
    if deps.store is not None and valid:
        # After the versions: a slow store must not delay what does not need it.
        # Versions that need the store say so on their own.
        try:
            await deps.store.ensure_bucket(bucket_for(model))
        except TransientError as exc:
            transient = transient or f"cannot create the model's bucket: {exc}"
            log.warning("%s: cannot create its bucket: %s", model, exc)
    return Outcome(requeue_after=requeue, transient=transient)


async def pin_image(deps: Deps, desired: dict[str, Any], prepared: Prepared,
                    service: ServiceObject | None) -> None:
    """Run an image aiart built by its registry digest, not its tag: whoever
    pushes to that tag later cannot change what the service runs. A live
    service pinned from the same tag keeps its pin (the tag may point
    elsewhere by now); a new one takes the digest this engine pushed; with
    neither, the tag. Hashes stay those of the rendered spec (by tag), so a
    digest never makes a difference of its own."""
    if prepared.recipe is None:
        return
    tag = prepared.image
    ref = ""
    if service is not None and service.labels.get(L.IMAGE_TAG) == tag:
        ref = str(service.spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image", ""))
    if "@sha256:" not in ref:
        ref = await deps.cluster.image_digest(tag)
    if "@sha256:" in ref:
        desired["TaskTemplate"]["ContainerSpec"]["Image"] = ref
        desired["Labels"][L.IMAGE_TAG] = tag


async def apply_change(
    deps: Deps, key: str, config: ConfigObject, prepared: Prepared, desired: dict[str, Any],
    service: ServiceObject | None, *, same_tasks: bool, started_ns: int, parsed_ns: int,
) -> float | None:
    """Build, push and deploy a version whose tasks must change (one trace);
    return seconds to the next look, None when it failed for good."""
    model, version = desired["Labels"][L.MODEL], desired["Labels"][L.VERSION]
    image = prepared.image
    with change_trace.change(deps.traces, model=model, version=version, config_id=config.id,
                             started_ns=started_ns, parsed_ns=parsed_ns):
        try:
            if not same_tasks:
                config = await set_status(deps, key, config, Status(
                    phase=Phase.BUILDING, message=f"building image {image}", image=image,
                    extra={"inputs": prepared.inputs}))
                with change_trace.tracer.start_as_current_span("build"):
                    if prepared.runtime is not None:
                        await deps.builder.ensure_runtime(prepared.runtime)
                    if prepared.recipe is not None:
                        await deps.builder.ensure_model_image(prepared.recipe, push=False)
                if prepared.recipe is not None:
                    with change_trace.tracer.start_as_current_span("push"):
                        await deps.builder.push_image(prepared.recipe.tag)
            with change_trace.tracer.start_as_current_span("deploy"):
                await pin_image(deps, desired, prepared, service)
                if service is None:
                    log.info("creating service %s", desired["Name"])
                    await deps.cluster.create_service(desired)
                else:
                    log.info("updating service %s", desired["Name"])
                    await deps.cluster.update_service(service, desired)
        except PermanentError as exc:
            # A build that cannot succeed, or a service Swarm refuses (a name
            # another model holds): the user must act.
            change_trace.settled(deps.traces, config.id)
            await set_status(deps, key, config, Status(
                phase=Phase.FAILED, message=str(exc), image=image,
                extra={"inputs": prepared.inputs}))
            return None
        await set_status(deps, key, config, Status(
            phase=Phase.DEPLOYING, message="service created; waiting for it to answer",
            image=image, extra={"inputs": prepared.inputs}))
    return POLL_SECONDS


async def reconcile_version(
    deps: Deps, plan: VersionPlan, service: ServiceObject | None, *, current: bool, ready: bool
) -> float | None:
    """Bring one version to its desired state; return seconds to the next look, if any."""
    cluster, settings = deps.cluster, deps.settings
    manifest = plan.manifest
    assert manifest is not None
    name, version = manifest.metadata.name, manifest.metadata.version
    config = plan.config
    key = deployment_key(name, version, config.id)
    phase, failed_inputs = read_status(config.labels)
    started_ns = time.time_ns()

    try:
        prepared = await prepare(deps, plan)
    except PermanentError as exc:
        change_trace.settled(deps.traces, config.id)
        await set_status(deps, key, config, Status(phase=Phase.FAILED, message=str(exc)))
        return None
    except TransientError as exc:
        if service is None:
            raise
        # Deployed already: the store (or engine) being away changes nothing
        # this version serves. Say so, keep the phase, look again later.
        current_status = status_from_labels(config.labels)
        await write_status(cluster, config, Status(
            phase=current_status.phase, message=current_status.message,
            image=current_status.image, endpoint=current_status.endpoint,
            extra={**current_status.extra, "dependency": f"cannot re-check the artifact: {exc}"}))
        return DEPENDENCY_RETRY_SECONDS
    parsed_ns = time.time_ns()
    await record_deployment(deps, key, plan, prepared)
    await flush_status_events(deps, key)

    image = prepared.image
    try:
        access = await store_access(deps, manifest)
    except PermanentError as exc:
        await set_status(deps, key, config, Status(phase=Phase.FAILED, message=str(exc)))
        return None
    desired = render_service(
        manifest=manifest, config_id=config.id, image=image, settings=settings,
        current=current, ordinal=plan.ordinal, store_access=access,
    )
    if service is None or service.labels.get(L.SPEC_HASH) != desired["Labels"][L.SPEC_HASH]:
        same_tasks = service is not None and (
            service.labels.get(L.TASK_HASH) == desired["Labels"][L.TASK_HASH])
        if phase is Phase.FAILED and failed_inputs == prepared.inputs and not same_tasks:
            return None  # this exact input failed before: wait for the user
        if same_tasks and phase is Phase.READY and service is not None:
            # Only its labels (routes) change: the tasks go on serving, and
            # the status below stays true to that instead of "Deploying".
            log.info("updating the routes of %s", desired["Name"])
            await pin_image(deps, desired, prepared, service)
            await cluster.update_service(service, desired)
        else:
            return await apply_change(
                deps, key, config, prepared, desired, service, same_tasks=same_tasks,
                started_ns=started_ns, parsed_ns=parsed_ns)

    tasks = await cluster.task_summary(service)
    extra = {
        "inputs": prepared.inputs,
        "replicas": f"{tasks.running}/{tasks.desired}",
        "current": "true" if current else "false",
    }
    endpoint = _endpoint(settings, name, version, current)
    if ready:
        change_trace.settled(deps.traces, config.id)
        await archive(deps, plan, prepared)
        note = "" if tasks.running >= tasks.desired else (
            f" (degraded: {tasks.running} of {tasks.desired} replicas running)")
        where = "the model's route" if current else "its versioned route"
        await set_status(deps, key, config, Status(
            phase=Phase.READY, message=f"serving at {where}{note}", image=image,
            endpoint=endpoint, extra=extra))
        return None if tasks.running >= tasks.desired else POLL_SECONDS * 5
    # Judge a ready image only once it has run long enough for the gateway
    # to route to it: a 404 before that is the gateway's, not the image's.
    if manifest.spec.runtime is Runtime.IMAGE and tasks.running_for > CONTRACT_GRACE_SECONDS:
        problems = await deps.gateway.contract_problems(name, version)
        if problems:
            change_trace.settled(deps.traces, config.id)
            await set_status(deps, key, config, Status(
                phase=Phase.FAILED,
                message="the image does not honour the inference contract: "
                        + "; ".join(problems) + " (see docs/runtimes.md)",
                image=image, extra=extra))
            return POLL_SECONDS * 5
    if tasks.desired == 0:
        await set_status(deps, key, config, Status(
            phase=Phase.PENDING, message="scaled to 0 replicas: nothing serves it",
            image=image, extra=extra))
        return None
    if tasks.failed >= settings.failed_task_threshold and tasks.running == 0:
        change_trace.settled(deps.traces, config.id)  # no more probes in its trace
        logs = await cluster.service_log_tail(service)
        message = f"the model's container keeps failing ({tasks.failed} tries): {tasks.last_error}"
        if logs:
            message += f"; last log lines: {logs}"
        await set_status(deps, key, config, Status(
            phase=Phase.FAILED, message=message, image=image, extra=extra))
        return POLL_SECONDS * 5
    await set_status(deps, key, config, Status(
        phase=Phase.DEPLOYING,
        message=f"{tasks.running} of {tasks.desired} replicas running; "
                "waiting for the gateway to route to it",
        image=image, extra=extra))
    return POLL_SECONDS
