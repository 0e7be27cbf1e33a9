"""The model server's settings: the model's own (``model.json``, written by
the operator into the image) and the server's (its environment)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

GENMODEL_JAR = "/opt/aiart/extra/h2o-genmodel.jar"


def _env(variable: str, default: str, doc: str) -> Any:
    return field(default=default, metadata={"env": variable, "doc": doc})


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Every variable a model server reads, declared once (the operator's
    docs/operations.md table lists them with its own)."""

    gateway_token: str = _env(
        "AIART_GATEWAY_TOKEN", "",
        "What the gateway's routes to this version add to each request (X-Aiart-Gateway): "
        "inference is answered to those requests only (the operator sets it); empty: to "
        "anyone.")
    genmodel_jar: str = _env("AIART_GENMODEL_JAR", GENMODEL_JAR,
                             "H2O's scoring classes (the h2o runtime).")
    pickle_allowlist: str = _env(
        "AIART_PICKLE_ALLOWLIST", "",
        "The pickle loader's allow-list file; empty: the image's, made at its build.")
    drain_seconds: str = _env(
        "AIART_DRAIN_SECONDS", "0",
        "After SIGTERM, the server goes on answering until no request has come for this "
        "many seconds, and only then stops (the operator sets it for scalable versions, so "
        "that the gateway has stopped routing to the task first); 0: it stops at once.")
    drain_limit_seconds: str = _env(
        "AIART_DRAIN_LIMIT_SECONDS", "30",
        "The longest the server goes on answering after SIGTERM (AIART_DRAIN_SECONDS), "
        "whatever comes.")
    payload_sample: str = _env(
        "AIART_PAYLOAD_SAMPLE", "",
        "The share of inference requests (0 to 1] logged with their answers to the model's "
        "bucket under payloads/ (the manifest's spec.logging.sample; the operator sets it); "
        "empty: none.")
    batch_job: str = _env(
        "AIART_BATCH_JOB", "",
        "The batch job that python -m aiart_runtime batch runs, as JSON: id, inputs (a key "
        "prefix in the model's bucket), chunkRows, modelDigest (docs/batch.md).")
    store_endpoint: str = _env(
        "AIART_STORE_ENDPOINT", "",
        "The object store (its gateway) that the model's keys open, host:port (the operator "
        "sets it when the manifest asks for the store or for payload logging).")
    store_secure: str = _env("AIART_STORE_SECURE", "false",
                             "Whether AIART_STORE_ENDPOINT speaks HTTPS.")
    store_bucket: str = _env("AIART_STORE_BUCKET", "", "The model's bucket, aiart-<model>.")
    store_access_key_file: str = _env("AIART_STORE_ACCESS_KEY_FILE", "",
                                      "The file holding the model's own store access key.")
    store_secret_key_file: str = _env("AIART_STORE_SECRET_KEY_FILE", "",
                                      "The file holding the model's own store secret key.")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerSettings:
        env = os.environ if env is None else env
        return cls(**{f.name: env[f.metadata["env"]] for f in fields(cls)
                      if env.get(f.metadata["env"], "").strip()})


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True, slots=True)
class BatchingSettings:
    """Adaptive batching (batching.py): at most this many rows per model
    call, and at most this long a wait for more."""

    max_batch_size: int
    max_latency_ms: float


@dataclass(frozen=True, slots=True)
class ModelSettings:
    """``model.json``, one definition: the operator writes it into a model's
    image (``to_json``), the model server reads it (``load``)."""

    name: str
    version: str
    runtime: str
    # The artifact's path; model.json holds its file name, beside itself.
    artifact: Path
    inputs: list[TensorSpec] | None
    outputs: list[TensorSpec] | None
    allow_unsafe_pickle: bool = False
    entrypoint: str | None = None
    batching: BatchingSettings | None = None
    # The largest request body (HTTP) or message (gRPC, either way) the
    # server takes; None: the server's default (server.py MAX_BODY_BYTES).
    max_request_bytes: int | None = None

    @classmethod
    def load(cls, model_dir: Path) -> ModelSettings:
        return cls.from_json((model_dir / "model.json").read_bytes(), model_dir)

    @classmethod
    def from_json(cls, data: bytes, model_dir: Path) -> ModelSettings:
        body: dict[str, Any] = json.loads(data)

        def tensors(items: list[dict[str, Any]] | None) -> list[TensorSpec] | None:
            return [TensorSpec(**t) for t in items] if items else None

        return cls(
            name=body["name"],
            version=str(body["version"]),
            runtime=body["runtime"],
            artifact=model_dir / body["artifact"],
            inputs=tensors(body.get("inputs")),
            outputs=tensors(body.get("outputs")),
            allow_unsafe_pickle=body.get("allow_unsafe_pickle") is True,
            entrypoint=body.get("entrypoint"),
            batching=BatchingSettings(**body["batching"]) if body.get("batching") else None,
            max_request_bytes=body.get("max_request_bytes"),
        )

    def to_json(self) -> bytes:
        """The file's bytes. They go into the model image's content hash:
        the same settings always give the same bytes."""
        def tensors(items: list[TensorSpec] | None) -> list[dict[str, Any]] | None:
            return [asdict(t) for t in items] if items else None

        body: dict[str, Any] = {
            "name": self.name, "version": self.version, "runtime": self.runtime,
            "artifact": self.artifact.name, "inputs": tensors(self.inputs),
            "outputs": tensors(self.outputs),
        }
        # Written only when set, so that existing models keep their image tags.
        if self.allow_unsafe_pickle:
            body["allow_unsafe_pickle"] = True
        if self.entrypoint:
            body["entrypoint"] = self.entrypoint
        if self.batching is not None:
            body["batching"] = asdict(self.batching)
        if self.max_request_bytes is not None:
            body["max_request_bytes"] = self.max_request_bytes
        return json.dumps(body, sort_keys=True, indent=2).encode()


# The exit status of a batch job that cannot succeed however often it is
# started (its input or its model is wrong): the operator fails the job at
# once instead of starting it again (docs/batch.md).
BATCH_REFUSED_EXIT = 2
BATCH_CHUNK_ROWS = 10_000
# The input files a batch job reads, by their keys' endings (batch.py).
BATCH_FORMATS = (".csv", ".jsonl", ".ndjson", ".parquet")


@dataclass(frozen=True, slots=True)
class BatchJob:
    """A batch job as the model's image runs it (``AIART_BATCH_JOB``, JSON),
    written by the operator (control/jobs.py), read by aiart_runtime/batch.py."""

    id: str
    # Keys under this prefix of the model's bucket, in the formats batch.py reads.
    inputs: str
    chunk_rows: int = BATCH_CHUNK_ROWS
    # What the model is, for the job's manifest (its image's digest).
    model_digest: str = ""

    @classmethod
    def from_json(cls, text: str) -> BatchJob:
        raw = json.loads(text)
        return cls(id=str(raw["id"]), inputs=str(raw["inputs"]),
                   chunk_rows=int(raw.get("chunkRows", BATCH_CHUNK_ROWS)),
                   model_digest=str(raw.get("modelDigest", "")))

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "inputs": self.inputs, "chunkRows": self.chunk_rows,
                           "modelDigest": self.model_digest}, sort_keys=True)

    @property
    def root(self) -> str:
        return f"jobs/{self.id}/"
