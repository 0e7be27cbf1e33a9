"""``reconcile_job``: one pass over one batch job (core/jobs.py).

A job's config says what to score; the pass makes its image (the model's,
with the job's layer), starts it once as a Swarm replicated job, follows its
progress in the model's bucket and writes it on the config's labels, and
removes the service once the job has ended. The outcome is kept on the
config (Succeeded, Failed, Invalid), so a job is never started twice; its
results stay in the bucket when its config is removed.
"""

from __future__ import annotations

import json
import logging

from aiart_runtime.settings import BatchJob

from aiart.build.recipes import BatchRecipe
from aiart.control.deps import Deps
from aiart.control.prepare import model_store_keys
from aiart.control.reconcile import Outcome
from aiart.core import jobs
from aiart.core import labels as L
from aiart.core.errors import ObjectMissing, PermanentError, TransientError
from aiart.core.jobs import JobError, JobPhase
from aiart.core.objects import ConfigObject, ServiceObject
from aiart.core.plan import plan_versions
from aiart.core.render import render_job
from aiart.core.spec import Runtime
from aiart.core.store_layout import bucket_for

log = logging.getLogger("aiart.jobs")
KEY_PREFIX = "job:"
POLL_SECONDS = 2.0
WAIT_SECONDS = 10.0


def job_key(job_id: str) -> str:
    """The job's key in the operator's work queue (beside model names)."""
    return f"{KEY_PREFIX}{job_id}"


async def _write(deps: Deps, config: ConfigObject, phase: JobPhase, message: str,
                 extra: dict[str, str] | None = None) -> ConfigObject:
    wanted = jobs.status_labels(config.labels, phase, message, extra)
    if wanted == dict(config.labels):
        return config
    if config.labels.get(L.STATUS) != phase.value:
        log.info("job %s: %s: %s", config.labels.get(L.JOB), phase.value, message)
    updated = await deps.cluster.update_config_labels(config, wanted)
    if updated is None:
        raise TransientError(f"config {config.name} changed while its status was written")
    return updated


async def reconcile_job(deps: Deps, job_id: str) -> Outcome:
    cluster = deps.cluster
    config = await cluster.get_config(jobs.config_name(job_id))
    if config is not None and config.labels.get(L.JOB) != job_id:
        config = None  # a config of that name that is no job of aiart's
    services = [s for s in await cluster.list_job_services() if s.labels.get(L.JOB) == job_id]
    phase = jobs.read_phase(config.labels) if config is not None else None
    if config is None or phase in jobs.TERMINAL:
        # Removed (its results stay in the bucket), or ended: no task may
        # start again.
        for service in services:
            log.info("job %s: removing %s", job_id, service.name)
            await cluster.remove_service(service)
        return Outcome(None)
    try:
        spec = jobs.parse_job(config.data)
    except JobError as exc:
        await _write(deps, config, JobPhase.INVALID, str(exc))
        return Outcome(None)
    if config.labels.get(L.JOB_OF) != spec.model:
        await _write(deps, config, JobPhase.INVALID,
                     f"label {L.JOB_OF}={config.labels.get(L.JOB_OF, '')} must name the "
                     f"job's model {spec.model}")
        return Outcome(None)
    if services:
        return await _follow(deps, config, spec.model, services[0])
    try:
        return await _start(deps, config, job_id, spec)
    except PermanentError as exc:
        await _write(deps, config, JobPhase.FAILED, str(exc))
        return Outcome(None)


async def _start(deps: Deps, config: ConfigObject, job_id: str, spec: jobs.JobSpec) -> Outcome:
    cluster, model = deps.cluster, spec.model
    plans = [p for p in plan_versions(model, await cluster.list_model_configs(model))
             if p.manifest is not None]
    if not plans:
        await _write(deps, config, JobPhase.INVALID, f"no model {model} is declared")
        return Outcome(None)
    # The version chosen once is kept on the config: a new version taking
    # over mid-job must not give a restarted task another model.
    version = config.labels.get(L.JOB_VERSION) or spec.version or next(
        (p.manifest.metadata.version for p in reversed(plans) if p.manifest
         and p.config.labels.get(L.STATUS_CURRENT) == "true"), None)
    plan = next((p for p in plans if p.manifest and p.manifest.metadata.version == version),
                None)
    if version is None or plan is None or plan.manifest is None:
        what = f"version {version}" if version else "a serving version"
        if spec.version:
            await _write(deps, config, JobPhase.INVALID, f"model {model} has no {what}")
            return Outcome(None)
        await _write(deps, config, JobPhase.PENDING, f"waiting for model {model} to have {what}")
        return Outcome(WAIT_SECONDS)
    manifest = plan.manifest
    if manifest.spec.runtime is Runtime.IMAGE:
        await _write(deps, config, JobPhase.INVALID,
                     f"{model} version {version} is a ready image: batch jobs run in the "
                     "images aiart builds (its runtime scores the rows)")
        return Outcome(None)
    served = [s for s in await cluster.list_services(model) if s.labels.get(L.VERSION) == version]
    if not served or not served[0].labels.get(L.IMAGE_TAG):
        await _write(deps, config, JobPhase.PENDING,
                     f"waiting for {model} version {version}'s image to be built and served")
        return Outcome(WAIT_SECONDS)
    pinned = str(served[0].spec["TaskTemplate"]["ContainerSpec"]["Image"])
    digest = pinned.partition("@")[2]
    config = await _write(deps, config, JobPhase.BUILDING,
                          f"building the job's image on {model} version {version}",
                          {L.JOB_VERSION: version})
    image = await deps.builder.ensure_batch_image(BatchRecipe(
        model_image=served[0].labels[L.IMAGE_TAG], python_version=deps.settings.python_version))
    store = await model_store_keys(deps, model, f"batch job {job_id}")
    pinned_job = await cluster.registry_digest(image) or image
    await cluster.create_service(render_job(
        job_id=job_id, model=model, version=version, image=pinned_job,
        job=BatchJob(id=job_id, inputs=spec.prefix, chunk_rows=spec.chunkRows,
                     model_digest=digest),
        manifest=manifest, settings=deps.settings, store=store, config_id=config.id))
    await _write(deps, config, JobPhase.RUNNING, f"started on {model} version {version}")
    return Outcome(POLL_SECONDS)


async def _read(deps: Deps, bucket: str, key: str) -> dict[str, object] | None:
    if deps.store is None:
        return None
    try:
        found = json.loads(await deps.store.get(bucket, key))
    except ObjectMissing:
        return None
    except (TransientError, ValueError) as exc:
        log.warning("cannot read s3://%s/%s: %s", bucket, key, exc)
        return None
    return found if isinstance(found, dict) else None


async def _follow(deps: Deps, config: ConfigObject, model: str,
                  service: ServiceObject) -> Outcome:
    cluster, job_id = deps.cluster, config.labels[L.JOB]
    phase, message = jobs.outcome(await cluster.task_states(service))
    bucket, root = bucket_for(model), f"jobs/{job_id}/"
    extra: dict[str, str] = {}
    if phase is JobPhase.SUCCEEDED:
        manifest = await _read(deps, bucket, f"{root}manifest.json") or {}
        rows = str(manifest.get("rows", "?"))
        extra = {L.STATUS_ROWS_DONE: rows, L.STATUS_ROWS_KNOWN: rows}
        resumed = manifest.get("resumedChunks") or 0
        again = f" ({resumed} chunks done before a restart)" if resumed else ""
        message = f"{rows} rows scored{again}; results in s3://{bucket}/{root}"
    else:
        progress = await _read(deps, bucket, f"{root}progress.json")
        if progress is not None:
            extra = {L.STATUS_ROWS_DONE: str(progress.get("rowsDone", 0)),
                     L.STATUS_ROWS_KNOWN: str(progress.get("rowsKnown", 0))}
        else:  # keep what was last read
            extra = {k: v for k, v in config.labels.items()
                     if k in (L.STATUS_ROWS_DONE, L.STATUS_ROWS_KNOWN)}
        if phase is JobPhase.FAILED:
            tail = (await cluster.service_log_tail(service, 3)).strip()
            message = f"{message}: {tail}" if tail else message
    await _write(deps, config, phase, message, extra)
    if phase in jobs.TERMINAL:
        log.info("job %s: removing %s", job_id, service.name)
        await cluster.remove_service(service)
        return Outcome(None)
    return Outcome(POLL_SECONDS)
