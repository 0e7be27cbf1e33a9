"""``reconcile_model``: one level-triggered pass over one model's versions.

It re-reads live state, parses every config, renders the desired services,
acts only on a difference and writes status only when it changed; running it
twice in a row changes nothing. Work for one version never blocks another.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, replace
from typing import Any

from aiart.auth.access import gateway_token, probe_token
from aiart.catalog.records import deployment_key
from aiart.control import change_trace
from aiart.control.deps import Deps
from aiart.control.metrics import VersionState, version_state
from aiart.control.prepare import Prepared, prepare, store_access
from aiart.control.records import (
    archive,
    flush_status_events,
    record_deployment,
    record_removal,
    set_status,
    write_status,
)
from aiart.control.rollouts import drive_rollouts
from aiart.control.streams import reconcile_streams
from aiart.core import labels as L
from aiart.core.errors import PermanentError, TransientError
from aiart.core.objects import ConfigObject, ServiceObject
from aiart.core.plan import VersionPlan, choose_current, plan_versions
from aiart.core.render import (
    carries_current_route,
    render_service,
)
from aiart.core.scaling import wanted_replicas
from aiart.core.settings import OperatorSettings
from aiart.core.spec import Runtime, image_repository
from aiart.core.status import Phase, Status, read_status, status_from_labels
from aiart.core.store_layout import bucket_for

log = logging.getLogger("aiart.reconcile")
POLL_SECONDS = 1.0
# A version whose task runs but which the gateway does not route to yet: it
# will within about a second (stack.yml reads the swarm every second and
# applies what changed at once), and each look is one probe through it.
# Looking four times a second lets Ready follow the route by a quarter of a
# second, not by up to a whole one; the wait is short, so is the extra work.
# So too while a started container waits for its first health check, which
# comes half a second after its start (core/render.py): the swarm runs it the
# moment it is healthy, and a pass a second later would make Ready wait.
ROUTE_POLL_SECONDS = 0.25
DEPENDENCY_RETRY_SECONDS = 10.0
CONTRACT_GRACE_SECONDS = 10.0
# A ready image answered 404 to every contract call: the gateway may not
# have read its route yet (a CI run saw two such versions judged Failed
# after 10 s on a loaded machine); only past this is it the image's answer.
UNROUTED_GRACE_SECONDS = 45.0


def asleep(plan: VersionPlan) -> bool:
    """A scalable version the autoscaler put at zero replicas."""
    scaling = plan.manifest.spec.scaling if plan.manifest else None
    return scaling is not None and wanted_replicas(scaling, plan.config.labels) == 0


@dataclass(frozen=True, slots=True)
class Outcome:
    requeue_after: float | None
    transient: str | None = None


def _endpoint(settings: OperatorSettings, name: str, version: str, current: bool) -> str:
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

    if not plans:
        # The model is gone: its streams' bridges first, then the secrets
        # its versions and bridges were given (no service holds them now).
        await reconcile_streams(deps, model, None)
        if services:
            await cluster.remove_model_secrets(model)

    versions = [p.manifest.metadata.version for p in valid if p.manifest]
    ready = set()
    for plan in valid:
        assert plan.manifest is not None
        version = plan.manifest.metadata.version
        if asleep(plan) and version in by_version:
            # Scaled to zero by the autoscaler: it serves (the activator holds
            # its requests and wakes it), and a probe would only miss.
            ready.add(version)
        elif version in by_version:
            with change_trace.probe(deps.traces, plan.config.id):
                if await deps.gateway.version_ready(model, version):
                    ready.add(version)
    routed = {v for v, s in by_version.items() if carries_current_route(dict(s.labels))}
    # A version under a rollout takes the model's routes only once promoted;
    # until then its share of traffic comes from the operator's traffic feed.
    rollouts = await drive_rollouts(deps, model, valid, ready=ready, routed=routed)
    valid = rollouts.plans
    eligible = [v for v in versions if v not in rollouts.held]
    served = await deps.gateway.current_version(model, sorted(routed)) if len(routed) > 1 or (
        routed and (ready - rollouts.held) - routed) else None
    current, handing_over = choose_current(
        valid=eligible, ready=ready, routed=routed, served=served)

    requeue: float | None = POLL_SECONDS if handing_over else rollouts.requeue_after
    if handing_over and rollouts.requeue_after is not None:
        requeue = min(POLL_SECONDS, rollouts.requeue_after)
    for plan in valid:
        assert plan.manifest is not None
        version = plan.manifest.metadata.version
        try:
            again = await reconcile_version(
                deps, plan, by_version.get(version), current=version in current,
                ready=version in ready, rollout_note=rollouts.notes.get(version, ""),
                rolled_back=rollouts.aborted.get(version, ""),
                rollout_role=rollouts.roles.get(version, ""),
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
    serving = [p.manifest for p in valid
               if p.manifest is not None and p.manifest.metadata.version in current]
    if serving:
        # The streams the model's routes' version names; with none routed yet,
        # bridges stay as they are.
        problem = await reconcile_streams(deps, model, serving[-1])
        if problem:
            log.warning("%s: %s", model, problem)
            transient = transient or problem
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
    """Run a model's image by its registry digest, not its tag: whoever
    pushes to that tag later cannot change what the service runs. A live
    service pinned from the same tag keeps its pin (the tag may point
    elsewhere by now); a new one takes the digest this engine pushed (an
    image aiart built) or the one the registry gives for the tag now (a
    ready image, as ``docker service create`` resolves one); with neither,
    the tag. Hashes stay those of the rendered spec (by tag), so a digest
    never makes a difference of its own."""
    tag = prepared.image
    if prepared.pinned:
        # An imported package's image: the digest it carried, nothing else.
        desired["TaskTemplate"]["ContainerSpec"]["Image"] = \
            f"{image_repository(tag)}@{prepared.pinned}"
        desired["Labels"][L.IMAGE_TAG] = tag
        return
    if "@sha256:" in tag:
        return  # pinned by the manifest itself
    ref = ""
    if service is not None and service.labels.get(L.IMAGE_TAG) == tag:
        ref = str(service.spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image", ""))
    if "@sha256:" not in ref and prepared.recipe is None:
        ref = await deps.cluster.registry_digest(tag)
    if "@sha256:" not in ref:
        ref = await deps.cluster.image_digest(tag)
    if "@sha256:" not in ref and prepared.recipe is not None:
        # Built elsewhere and put in the registry (a model package's image):
        # what the registry gives for the tag.
        ref = await deps.cluster.registry_digest(tag)
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
            # A ready image or an imported one has no recipe: nothing to
            # build. An image the registry holds under the recipe's tag
            # already (another manager's build) is what this one would
            # build: none is built or pushed.
            recipe = None if same_tasks else prepared.recipe
            if recipe is not None and await deps.cluster.registry_digest(recipe.tag):
                log.info("image %s is in the registry already: not built", image)
                recipe = None
            if not same_tasks and prepared.pinned and not await deps.cluster.registry_digest(
                    f"{image_repository(image)}@{prepared.pinned}"):
                # Retried: the registry may be down for a while; or the image
                # was removed since the import, which only a new import mends.
                raise TransientError(f"the image its package brought ({prepared.pinned}) is "
                                     "not in the registry: is the registry up? (if the image "
                                     "was removed, import the package again)")
            if recipe is not None:
                config = await set_status(deps, key, config, Status(
                    phase=Phase.BUILDING, message=f"building image {image}", image=image,
                    extra={"inputs": prepared.inputs}))
                with change_trace.tracer.start_as_current_span("build"):
                    if prepared.runtime is not None:
                        await deps.builder.ensure_runtime(prepared.runtime)
                    await deps.builder.ensure_model_image(recipe, push=False)
                with change_trace.tracer.start_as_current_span("push"):
                    await deps.builder.push_image(recipe.tag)
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
    deps: Deps, plan: VersionPlan, service: ServiceObject | None, *, current: bool, ready: bool,
    rollout_note: str = "", rolled_back: str = "", rollout_role: str = "",
) -> float | None:
    """Bring one version to its desired state; return seconds to the next look,
    if any. ``rollout_note``: where its rollout stands (aiart.status.rollout);
    ``rolled_back``: why its rollout gave the traffic back (then it is Failed,
    though it still answers at its versioned route); ``rollout_role``: what it
    is in a rollout under way (a label on its service, for its metrics)."""
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
    probe_key = deps.probe_key
    desired = render_service(
        manifest=manifest, config_id=config.id, image=image, settings=settings,
        current=current, ordinal=plan.ordinal, store_access=access,
        gateway_token=gateway_token(probe_key, name, version)
        if probe_key and settings.gateway_only else "",
        probe_digest=hashlib.sha256(probe_token(probe_key, name, version).encode()).hexdigest()
        if probe_key else "",
        rollout_role=rollout_role,
        replicas=wanted_replicas(manifest.spec.scaling, config.labels)
        if manifest.spec.scaling else None,
    )
    if service is None or service.labels.get(L.SPEC_HASH) != desired["Labels"][L.SPEC_HASH]:
        same_tasks = service is not None and (
            service.labels.get(L.TASK_HASH) == desired["Labels"][L.TASK_HASH])
        if phase is Phase.FAILED and failed_inputs == prepared.inputs and not same_tasks:
            return None  # this exact input failed before: wait for the user
        if same_tasks and service is not None:
            # Only its labels (routes, a rollout's role) change: the tasks go
            # on as they were, and the status below, written in this same
            # pass, stays true to them: a Ready one is not shown Deploying,
            # and a rollout that begins now says so at once (on a busy
            # operator the next pass may come many seconds later).
            log.info("updating the routes or replicas of %s", desired["Name"])
            await pin_image(deps, desired, prepared, service)
            await cluster.update_service(service, desired)
            # What follows reads the service as it is now (its replicas).
            service = replace(service, spec=desired, labels=desired["Labels"])
        else:
            return await apply_change(
                deps, key, config, prepared, desired, service, same_tasks=same_tasks,
                started_ns=started_ns, parsed_ns=parsed_ns)

    tasks = await cluster.task_summary(service)
    answering = ready and (tasks.running > 0 or asleep(plan))
    answered = answering or config.labels.get(L.STATUS_ANSWERED) == "true"
    extra = {
        "inputs": prepared.inputs,
        "replicas": f"{tasks.running}/{tasks.desired}",
        "current": "true" if current else "false",
        **({"answered": "true"} if answered else {}),
    }
    if rollout_note:
        extra["rollout"] = rollout_note
    endpoint = _endpoint(settings, name, version, current)
    if rolled_back:
        change_trace.settled(deps.traces, config.id)
        await set_status(deps, key, config, Status(
            phase=Phase.FAILED, message=f"rolled back: {rolled_back}; the model's traffic "
            "stays with the version it had, and this one answers only at its versioned "
            "route", image=image, endpoint=endpoint, extra={**extra, "rollout": "aborted"}))
        return None
    # What answered may be a task of the service this one replaced (the same
    # version removed and declared again): still draining, it answers the
    # probe; Ready waits for a task of this service.
    if answering:
        change_trace.settled(deps.traces, config.id)
        await archive(deps, plan, prepared)
        where = "the model's route" if current else (
            "its versioned route, and its share of the model's route"
            if rollout_note else "its versioned route")
        if asleep(plan):
            await set_status(deps, key, config, Status(
                phase=Phase.READY, message=f"asleep at zero replicas; a request to {where} "
                "wakes it", image=image, endpoint=endpoint, extra=extra))
            return None
        note = "" if tasks.running >= tasks.desired else (
            f" (scaling: {tasks.running} of {tasks.desired} replicas running)"
            if manifest.spec.scaling else
            f" (degraded: {tasks.running} of {tasks.desired} replicas running)")
        await set_status(deps, key, config, Status(
            phase=Phase.READY, message=f"serving at {where}{note}", image=image,
            endpoint=endpoint, extra=extra))
        return None if tasks.running >= tasks.desired else POLL_SECONDS * 5
    # Judge a ready image only once it has run long enough for the gateway
    # to route to it, and never once it has answered: a 404 then is the
    # gateway's, not the image's (a CI run saw one judged Failed as the
    # gateway rebuilt its routes the moment the version became current).
    if (manifest.spec.runtime is Runtime.IMAGE and not answered
            and tasks.running_for > CONTRACT_GRACE_SECONDS):
        problems = await deps.gateway.contract_problems(
            name, version, settled=tasks.running_for > UNROUTED_GRACE_SECONDS)
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
    if manifest.spec.scaling is not None and phase is Phase.READY and tasks.desired:
        # Woken from zero (or growing from it): it served before and will
        # again; the activator holds its requests meanwhile.
        await set_status(deps, key, config, Status(
            phase=Phase.READY, message=f"waking: {tasks.running} of {tasks.desired} "
            "replicas running; requests are held until one answers",
            image=image, endpoint=endpoint, extra=extra))
        return POLL_SECONDS
    await set_status(deps, key, config, Status(
        phase=Phase.DEPLOYING,
        message=f"{tasks.running} of {tasks.desired} replicas running; "
                "waiting for the gateway to route to it",
        image=image, extra=extra))
    return ROUTE_POLL_SECONDS if tasks.running or tasks.starting else POLL_SECONDS
