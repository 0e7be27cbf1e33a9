"""Batch scoring: rows read from the model's bucket, scored in chunks by the
model itself (in its own image, with its own runtime: the answers are the
ones a caller of its API would get), written back to the bucket:

    jobs/<id>/output/<file>-<chunk>.jsonl   one line per row: its source, index, outputs
    jobs/<id>/chunks/<file>-<chunk>.json    written after its output: the chunk is done
    jobs/<id>/progress.json                 rows done of rows known, after each chunk
    jobs/<id>/manifest.json                 written last: inputs, outputs, rows, the model

A job started again (its task killed, its node lost) lists the chunks that
are done and starts from the first that is not: a chunk is scored again
only if it was cut off before its record was written, and its output is
then written anew, whole.

Inputs: CSV (a header row names the columns), JSON lines (objects, whose
keys in the first object's order are the columns, or arrays) and Parquet
(with pyarrow in the image), by the key's ending; every column a number.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from .model import ServedModel
from .protocol import ProtocolError, decode_request
from .settings import BATCH_FORMATS, BatchJob

log = logging.getLogger("aiart_runtime")
FORMATS = BATCH_FORMATS


class BatchError(RuntimeError):
    """A job that cannot go on; the message says why."""


class Bucket(Protocol):
    """The model's bucket, as a job needs it."""

    def list(self, prefix: str) -> list[str]: ...
    def get(self, key: str) -> bytes: ...
    def put(self, key: str, data: bytes, content_type: str) -> None: ...


@dataclass(slots=True)
class Table:
    columns: list[str] | None
    rows: npt.NDArray[np.float64]


def read_table(key: str, data: bytes) -> Table:
    """A file's rows as a float matrix (BatchError for what is not one)."""
    try:
        if key.endswith(".csv"):
            return _csv(data)
        if key.endswith((".jsonl", ".ndjson")):
            return _json_lines(data)
        if key.endswith(".parquet"):
            return _parquet(data)
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise BatchError(f"{key}: {exc}") from None
    raise BatchError(f"{key}: not a file a job reads ({', '.join(FORMATS)})")


def _csv(data: bytes) -> Table:
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig")))
    lines = [line for line in reader if line]
    columns = None
    if lines:
        try:
            [float(v) for v in lines[0]]
        except ValueError:
            columns, lines = lines[0], lines[1:]
    return Table(columns, np.asarray(lines, dtype=np.float64).reshape(len(lines), -1))


def _json_lines(data: bytes) -> Table:
    columns: list[str] | None = None
    rows: list[list[float]] = []
    for number, line in enumerate(data.decode().splitlines(), 1):
        if not line.strip():
            continue
        value = json.loads(line)
        if isinstance(value, dict):
            columns = columns or list(value)
            rows.append([value[c] for c in columns])
        elif isinstance(value, list):
            rows.append(value)
        else:
            raise ValueError(f"line {number} is neither an object nor an array")
    return Table(columns, np.asarray(rows, dtype=np.float64).reshape(len(rows), -1))


def _parquet(data: bytes) -> Table:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise BatchError("Parquet needs pyarrow, which this model's image does not have: "
                         "give CSV or JSON lines") from None
    table = pq.read_table(io.BytesIO(data))
    matrix = np.column_stack([table.column(c).to_numpy().astype(np.float64)
                              for c in table.column_names]) if table.num_columns else (
        np.empty((0, 0)))
    return Table(list(table.column_names), matrix)


def score(model: ServedModel, rows: npt.NDArray[np.float64]) -> list[dict[str, Any]]:
    """Each row's outputs, by the same decoding and model call as an API request."""
    specs = model.input_specs()
    name = specs[0].name if specs else "input-0"
    request = decode_request({"inputs": [{
        "name": name, "shape": list(rows.shape), "datatype": "FP64",
        "data": rows.ravel().tolist()}]}, None)
    outputs = model.infer(request.inputs, None)
    return [{out: array[i].tolist() for out, array in outputs} for i in range(len(rows))]


@dataclass
class Progress:
    files: int = 0
    rows_known: int = 0
    rows_done: int = 0
    chunks_done: int = 0
    chunks_skipped: int = 0
    started: str = field(default_factory=lambda: datetime.now(UTC).isoformat(
        timespec="seconds"))


def run(model: ServedModel, bucket: Bucket, job: BatchJob,
        on_chunk: Callable[[Progress], None] | None = None) -> dict[str, Any]:
    """Run (or resume) ``job``; returns its manifest, also written last."""
    inputs = sorted(k for k in bucket.list(job.inputs) if k.endswith(FORMATS))
    if not inputs:
        raise BatchError(f"no input under {job.inputs!r} ({', '.join(FORMATS)})")
    done = {k.rsplit("/", 1)[-1].removesuffix(".json")
            for k in bucket.list(f"{job.root}chunks/")}
    progress = Progress(files=len(inputs))
    manifest_inputs, outputs = [], []
    for index, key in enumerate(inputs):
        data = bucket.get(key)
        table = read_table(key, data)
        progress.rows_known += len(table.rows)
        manifest_inputs.append({"key": key, "rows": len(table.rows),
                                "sha256": hashlib.sha256(data).hexdigest(),
                                "columns": table.columns})
        for chunk, first in enumerate(range(0, len(table.rows), job.chunk_rows)):
            name = f"{index:05d}-{chunk:05d}"
            output = f"{job.root}output/{name}.jsonl"
            rows = table.rows[first:first + job.chunk_rows]
            outputs.append({"key": output, "input": key, "first": first, "rows": len(rows)})
            if name in done:
                progress.chunks_skipped += 1
                progress.rows_done += len(rows)
                continue
            try:
                scored = score(model, rows)
            except ProtocolError as exc:
                raise BatchError(f"{key}: the model refused rows {first}-{first + len(rows) - 1}"
                                 f": {exc}") from None
            lines = b"".join(json.dumps({"input": key, "index": first + i, "outputs": out},
                                        separators=(",", ":")).encode() + b"\n"
                             for i, out in enumerate(scored))
            bucket.put(output, lines, "application/x-ndjson")
            bucket.put(f"{job.root}chunks/{name}.json", json.dumps({
                "input": key, "first": first, "rows": len(rows), "output": output,
                "sha256": hashlib.sha256(lines).hexdigest(),
                "written": datetime.now(UTC).isoformat()}).encode(), "application/json")
            progress.chunks_done += 1
            progress.rows_done += len(rows)
            bucket.put(f"{job.root}progress.json", json.dumps(
                {"rowsDone": progress.rows_done, "rowsKnown": progress.rows_known,
                 "files": progress.files}).encode(), "application/json")
            if on_chunk is not None:
                on_chunk(progress)
    settings = model.settings
    manifest = {
        "id": job.id, "model": settings.name, "version": settings.version,
        "modelDigest": job.model_digest, "inputs": manifest_inputs, "outputs": outputs,
        "rows": progress.rows_done, "chunkRows": job.chunk_rows,
        "resumedChunks": progress.chunks_skipped, "started": progress.started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    bucket.put(f"{job.root}manifest.json", json.dumps(manifest, indent=2).encode(),
               "application/json")
    return manifest


def read_outputs(bucket: Bucket, job: BatchJob) -> Iterator[dict[str, Any]]:
    """A finished job's rows, in order (for tests and the CLI)."""
    manifest = json.loads(bucket.get(f"{job.root}manifest.json"))
    for output in manifest["outputs"]:
        for line in bucket.get(output["key"]).splitlines():
            yield json.loads(line)


class MinioBucket:
    """The model's bucket through MinIO's SDK (the store gateway, its keys)."""

    def __init__(self, *, endpoint: str, secure: bool, bucket: str, access_key: str,
                 secret_key: str) -> None:
        from minio import Minio
        self.client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                            secure=secure)
        self.bucket = bucket

    def list(self, prefix: str) -> list[str]:
        return [str(o.object_name) for o in self.client.list_objects(
            self.bucket, prefix=prefix, recursive=True)]

    def get(self, key: str) -> bytes:
        response = self.client.get_object(self.bucket, key)
        try:
            return bytes(response.read())
        finally:
            response.close()
            response.release_conn()

    def put(self, key: str, data: bytes, content_type: str) -> None:
        for attempt in range(5):
            try:
                self.client.put_object(self.bucket, key, io.BytesIO(data), len(data),
                                       content_type=content_type)
                return
            except Exception as exc:  # the store away a moment: the job waits, then fails
                if attempt == 4:
                    raise BatchError(f"cannot write {key}: {exc}") from exc
                time.sleep(2 ** attempt)
