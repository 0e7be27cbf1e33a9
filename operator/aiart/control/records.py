"""What a pass writes down: a version's status labels (and their events in
the catalog), its deployment and removal in the catalog, and its manifest
and artifact archived in the model's bucket."""

from __future__ import annotations

import logging

from aiart.catalog.records import HISTORY_LIMIT, Deployment, deployment_key, now
from aiart.control.deps import Deps
from aiart.control.ports import Cluster
from aiart.control.prepare import Prepared
from aiart.core import labels as L
from aiart.core.errors import TransientError
from aiart.core.objects import ConfigObject
from aiart.core.plan import VersionPlan
from aiart.core.status import Status, status_labels
from aiart.core.store_layout import artifact_key, bucket_for, manifest_key

log = logging.getLogger("aiart.reconcile")


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
        digest = prepared.pinned or (
            await deps.cluster.image_digest(prepared.image) if prepared.recipe else "")
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
