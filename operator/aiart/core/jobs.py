"""Batch jobs: their declaration, their ids, and their status. Pure: no I/O.

A job is a Docker config named ``aiart-job-<id>`` and labelled
``aiart.job=<id>``, like a model's version: the API and the CLI write one,
and so may ``docker config create`` or a stack. Its data (YAML or JSON)::

    model: iris
    version: "2"                          # optional: the one serving when it starts
    input: s3://aiart-iris/inputs/2026-12-05/
    chunkRows: 10000                      # optional

The operator runs it as a Swarm replicated job of the model's own image
(control/jobs.py) and writes where it stands on the config's labels.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Any

import yaml
from aiart_runtime.settings import BATCH_CHUNK_ROWS, BATCH_REFUSED_EXIT
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aiart.core import labels as L
from aiart.core.objects import TaskState
from aiart.core.spec import DNS_LABEL
from aiart.core.status import MAX_MESSAGE
from aiart.core.store_layout import bucket_for

CONFIG_PREFIX = "aiart-job-"
# Job ids become service names (aiart-job-<id>): a DNS label, short.
JOB_ID = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
MAX_JOB_BYTES = 4096
MAX_CHUNK_ROWS = 1_000_000
# A task killed or lost is started again this many times before the job fails
# (it resumes from its last finished chunk each time).
RESTARTS = 4


class JobPhase(StrEnum):
    PENDING = "Pending"  # waiting for its model's version to run
    BUILDING = "Building"  # its image is being built
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    INVALID = "Invalid"


TERMINAL = frozenset({JobPhase.SUCCEEDED, JobPhase.FAILED, JobPhase.INVALID})


class JobError(ValueError):
    """A job declaration aiart cannot run; the message says why."""


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    version: str | None = None
    input: str = Field(description="s3://aiart-<model>/<prefix>: the files to score")
    chunkRows: int = Field(default=BATCH_CHUNK_ROWS, ge=1, le=MAX_CHUNK_ROWS)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not DNS_LABEL.match(value):
            raise ValueError(f"{value!r} is not a model name")
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        # YAML reads version: 2 as a number; a version is a name.
        return str(value) if isinstance(value, int | float) else value

    @property
    def prefix(self) -> str:
        """The key prefix of the input files in the model's bucket."""
        return self.input.removeprefix(f"s3://{bucket_for(self.model)}/")


def input_problem(model: str, uri: str) -> str | None:
    """Why ``uri`` cannot be a job's input for ``model`` (None: it can). A job
    runs with the model's own store keys, which read its own bucket only."""
    bucket = bucket_for(model)
    if not uri.startswith("s3://"):
        return f"input {uri!r} is not an s3:// address (s3://{bucket}/<prefix>)"
    if not uri.startswith(f"s3://{bucket}/"):
        return (f"input {uri!r} is not in model {model}'s bucket: a job reads with the "
                f"model's own keys, which reach s3://{bucket}/ only; put the files there "
                f"first and name s3://{bucket}/<prefix>")
    if uri.removeprefix(f"s3://{bucket}/").startswith("jobs/"):
        return f"input {uri!r} is under jobs/, where jobs write their results"
    return None


def parse_job(data: bytes) -> JobSpec:
    """A job's declaration, or JobError listing what is wrong with it."""
    if len(data) > MAX_JOB_BYTES:
        raise JobError(f"the job is {len(data)} bytes; at most {MAX_JOB_BYTES}")
    try:
        document = yaml.safe_load(data.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        raise JobError(f"the job is not YAML or JSON: {exc}".replace("\n", " ")) from None
    if not isinstance(document, dict):
        raise JobError("a job is a mapping with model, input and, optionally, version "
                       "and chunkRows")
    try:
        spec = JobSpec.model_validate(document)
    except ValidationError as exc:
        raise JobError("; ".join(f"{'.'.join(map(str, e['loc'])) or 'job'}: {e['msg']}"
                                 for e in exc.errors())) from None
    problem = input_problem(spec.model, spec.input)
    if problem:
        raise JobError(problem)
    return spec


def new_job_id(model: str, now: datetime) -> str:
    """``<model>-<yyyymmdd>-<hhmmss>-<4 hex>``, shortened to fit a service name."""
    stamp = f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"
    return f"{model[:40 - len(stamp) - 1].rstrip('-')}-{stamp}"


def config_name(job_id: str) -> str:
    return f"{CONFIG_PREFIX}{job_id}"


def service_name(job_id: str) -> str:
    return f"{CONFIG_PREFIX}{job_id}"


def job_labels(job_id: str, model: str, created_by: str) -> dict[str, str]:
    return {L.JOB: job_id, L.JOB_OF: model, L.CREATED_BY: created_by,
            L.MANAGED_BY: L.MANAGED_BY_VALUE}


def status_labels(current: Mapping[str, str], phase: JobPhase, message: str,
                  extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The config's labels with its status replaced."""
    out = {k: v for k, v in current.items()
           if k != L.STATUS and not k.startswith(L.STATUS_PREFIX)}
    text = " ".join(message.split())
    out[L.STATUS] = phase.value
    out[L.STATUS_MESSAGE] = text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE - 1] + "…"
    out.update(extra or {})
    return out


def read_phase(labels: Mapping[str, str]) -> JobPhase | None:
    try:
        return JobPhase(labels.get(L.STATUS, ""))
    except ValueError:
        return None


ACTIVE = frozenset({"new", "allocated", "pending", "assigned", "accepted", "preparing",
                    "ready", "starting", "running"})


def outcome(tasks: Sequence[TaskState]) -> tuple[JobPhase, str]:
    """Where a job's service stands, from its tasks (Swarm starts a failed one
    again up to RESTARTS times: the job resumes from its last chunk)."""
    if any(t.state == "complete" for t in tasks):
        return JobPhase.SUCCEEDED, "done"
    ended = [t for t in tasks if t.state in ("failed", "rejected", "shutdown", "orphaned")]
    refused = next((t for t in ended if t.exit_code == BATCH_REFUSED_EXIT), None)
    if refused is not None:
        return JobPhase.FAILED, "the job cannot succeed (its log says why)"
    if any(t.state in ACTIVE for t in tasks):
        if ended:
            last = ended[-1]
            return JobPhase.RUNNING, (f"started again after a task ended ({last.state}: "
                                      f"{last.message or 'exit ' + str(last.exit_code)})")
        return JobPhase.RUNNING, "running"
    if len(ended) > RESTARTS:
        last = ended[-1]
        return JobPhase.FAILED, (f"{len(ended)} tasks ended without finishing; the last: "
                                 f"{last.message or 'exit ' + str(last.exit_code)}")
    return JobPhase.RUNNING, "starting"
