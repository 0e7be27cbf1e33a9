"""Training runs in a model's bucket: upload one, list them, read one back.

A run is written file by file and its ``run.json`` last, so a run whose
record exists is complete: an upload cut short leaves no run that a
manifest could deploy.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from aiart.core.errors import ObjectMissing, PermanentError
from aiart.core.store_layout import (
    SEGMENT,
    BadURI,
    RunRecord,
    RunRef,
    bucket_for,
    new_run_id,
    run_file_key,
    run_model_key,
    run_prefix,
    run_record_key,
)
from aiart.store.client import Store


class RunError(PermanentError):
    pass


async def upload_run(
    store: Store, model: str, model_file: Path, *,
    metrics: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
    files: Sequence[tuple[str, Path]] = (), run_id: str | None = None,
) -> RunRecord:
    """Store a training run under ``runs/<id>/`` in the model's bucket."""
    read = [(name, await anyio.Path(path).read_bytes()) for name, path in files]
    return await store_run(store, model, model_file.name,
                           await anyio.Path(model_file).read_bytes(), metrics=metrics,
                           params=params, files=read, run_id=run_id)


async def store_run(
    store: Store, model: str, filename: str, data: bytes, *,
    metrics: Mapping[str, Any] | None = None, params: Mapping[str, Any] | None = None,
    files: Sequence[tuple[str, bytes]] = (), run_id: str | None = None,
) -> RunRecord:
    """``upload_run`` for what is in memory already (the API's uploads)."""
    if not SEGMENT.match(filename):
        raise RunError(f"model file name {filename!r} must be letters, digits or ._+=@,-")
    run_id = run_id or new_run_id()
    bucket = bucket_for(model)
    try:
        keys = [(run_file_key(run_id, name), content) for name, content in files]
    except BadURI as exc:
        raise RunError(str(exc)) from None
    await store.ensure_bucket(bucket)
    digest = hashlib.sha256(data).hexdigest()
    await store.put(bucket, run_model_key(run_id, filename), data,
                    metadata={"sha256": digest})
    if metrics is not None:
        await store.put(bucket, f"{run_prefix(run_id)}metrics.json",
                        json.dumps(metrics, indent=2, sort_keys=True).encode(),
                        content_type="application/json")
    if params is not None:
        await store.put(bucket, f"{run_prefix(run_id)}params.json",
                        json.dumps(params, indent=2, sort_keys=True).encode(),
                        content_type="application/json")
    for key, content in keys:
        await store.put(bucket, key, content)
    record = RunRecord(
        run_id=run_id, model=model, model_file=filename, sha256=digest, size=len(data),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        files=tuple(name for name, _ in files),
        has_metrics=metrics is not None, has_params=params is not None,
    )
    await store.put(bucket, run_record_key(run_id), record.to_json(),
                    content_type="application/json")
    return record


async def read_run(store: Store, ref: RunRef) -> RunRecord:
    bucket = bucket_for(ref.model)
    raw = await store.get(bucket, run_record_key(ref.run_id))
    try:
        return RunRecord.from_json(raw)
    except BadURI as exc:
        raise RunError(f"run://{ref.model}/{ref.run_id}: {exc}") from None


async def fetch_run_model(store: Store, ref: RunRef) -> tuple[bytes, RunRecord]:
    """The run's model file, checked against the digest its record holds."""
    record = await read_run(store, ref)
    data = await store.get(bucket_for(ref.model), run_model_key(ref.run_id, record.model_file))
    digest = hashlib.sha256(data).hexdigest()
    if digest != record.sha256:
        raise RunError(
            f"run://{ref.model}/{ref.run_id}: model file has sha256 {digest}, but the run "
            f"recorded {record.sha256}; the stored run was altered")
    return data, record


async def list_runs(store: Store, model: str) -> list[RunRecord]:
    try:
        keys = await store.list(bucket_for(model), "runs/")
    except ObjectMissing:
        return []  # no bucket yet: no runs
    records = []
    for key in sorted(k for k in keys if k.endswith("/run.json") and k.count("/") == 2):
        try:
            records.append(RunRecord.from_json(await store.get(bucket_for(model), key)))
        except BadURI:
            continue  # not a run aiart wrote; listing others is not our business
    return records
