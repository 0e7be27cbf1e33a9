"""Where things live in the object store, and the artifact URIs. Pure: no I/O.

Each model has one bucket, ``aiart-<model>``, laid out as:

    artifacts/<version>/<file>      the artifact a deployed version was built from
    manifests/<version>.yaml        the manifest of that version, as deployed
    runs/<run-id>/run.json          a training run's record (model file, digest, time)
    runs/<run-id>/model/<file>      the run's model file
    runs/<run-id>/metrics.json      its metrics, as given
    runs/<run-id>/params.json       its parameters, as given
    runs/<run-id>/files/<path>      any other files of the run
    predictions/...                 free for the model's own results
    payloads/<date>/<batch>.jsonl.gz its servers' payload log (spec.logging)
    jobs/<id>/...                   its batch jobs' results and manifests

An artifact URI is ``config://<docker config>``, ``s3://<bucket>/<key>`` or
``run://<model>/<run-id>``.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

BUCKET_PREFIX = "aiart-"
# S3 bucket names: 3-63 characters, lower-case letters, digits, '.' and '-'.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
RUN_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")
CONFIG_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
MODEL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# One path segment of a run's free files: no separators, no '..', no control characters.
SEGMENT = re.compile(r"^(?!\.{1,2}$)[A-Za-z0-9._+=@,-]{1,255}$")
MAX_KEY = 1024


class BadURI(ValueError):
    """An artifact URI that aiart cannot use; the message says why."""


@dataclass(frozen=True, slots=True)
class ConfigRef:
    name: str


@dataclass(frozen=True, slots=True)
class S3Ref:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class RunRef:
    model: str
    run_id: str


ArtifactRef = ConfigRef | S3Ref | RunRef


def bucket_for(model: str) -> str:
    return f"{BUCKET_PREFIX}{model}"


def check_key(key: str) -> str:
    """An object key aiart will read: relative, no '.' or '..' segments, printable."""
    if not key or len(key) > MAX_KEY:
        raise BadURI(f"object key must have 1 to {MAX_KEY} characters")
    if key.startswith("/") or any(part in ("", ".", "..") for part in key.split("/")):
        raise BadURI(f"object key {key!r} must be a relative path without '.', '..' or '//'")
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise BadURI(f"object key {key!r} contains control characters")
    return key


def parse_artifact_uri(uri: str) -> ArtifactRef:
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise BadURI(f"{uri!r} is not a URI; use config://<config>, s3://<bucket>/<key> "
                     "or run://<model>/<run-id>")
    if scheme == "config":
        if not CONFIG_NAME.match(rest) or len(rest) > 64:
            raise BadURI(f"{rest!r} is not a valid Docker config name")
        return ConfigRef(rest)
    if scheme == "s3":
        bucket, _, key = rest.partition("/")
        if not BUCKET_NAME.match(bucket) or ".." in bucket:
            raise BadURI(f"{bucket!r} is not a valid S3 bucket name")
        return S3Ref(bucket, check_key(key))
    if scheme == "run":
        model, _, run_id = rest.partition("/")
        if not MODEL_NAME.match(model):
            raise BadURI(f"{model!r} is not a model name")
        if not RUN_ID.match(run_id):
            raise BadURI(f"{run_id!r} is not a run id such as 20260101T120000Z-0a1b2c3d")
        return RunRef(model, run_id)
    raise BadURI(f"scheme {scheme!r} is not supported; use config://, s3:// or run://")


def new_run_id(now: datetime | None = None) -> str:
    """Sortable by time, unique without coordination."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%SZ')}-{secrets.token_hex(4)}"


def artifact_key(version: str, filename: str) -> str:
    return f"artifacts/{version}/{filename}"


def manifest_key(version: str) -> str:
    return f"manifests/{version}.yaml"


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def run_record_key(run_id: str) -> str:
    return f"runs/{run_id}/run.json"


def run_model_key(run_id: str, filename: str) -> str:
    return f"runs/{run_id}/model/{filename}"


def run_file_key(run_id: str, relative: str) -> str:
    parts = relative.replace("\\", "/").split("/")
    if not all(SEGMENT.match(p) for p in parts):
        raise BadURI(f"run file {relative!r}: each path part must be letters, digits or ._+=@,-"
                     " and not '.' or '..'")
    return f"runs/{run_id}/files/{'/'.join(parts)}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRecord:
    """``runs/<id>/run.json``: what a stored training run holds."""

    run_id: str
    model: str
    model_file: str
    sha256: str
    size: int
    created: str
    files: tuple[str, ...] = ()
    has_metrics: bool = False
    has_params: bool = False

    def to_json(self) -> bytes:
        return json.dumps({
            "runId": self.run_id, "model": self.model, "modelFile": self.model_file,
            "sha256": self.sha256, "size": self.size, "created": self.created,
            "files": list(self.files), "metrics": self.has_metrics, "params": self.has_params,
        }, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> RunRecord:
        try:
            raw: Any = json.loads(data)
            record = cls(
                run_id=str(raw["runId"]), model=str(raw["model"]),
                model_file=str(raw["modelFile"]), sha256=str(raw["sha256"]),
                size=int(raw["size"]), created=str(raw["created"]),
                files=tuple(str(f) for f in raw.get("files", ())),
                has_metrics=bool(raw.get("metrics")), has_params=bool(raw.get("params")),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise BadURI(f"run.json is not a run record: {exc}") from None
        if not SEGMENT.match(record.model_file):
            raise BadURI(f"run.json names model file {record.model_file!r}, not a file name")
        return record
