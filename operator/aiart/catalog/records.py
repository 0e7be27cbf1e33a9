"""The catalog: every deployed manifest, its digests and its status history.

Pure: records, queries and the interface that the backends (``configs``,
``mongo``) implement. The live status of a model stays on its
config's labels; the catalog is the record of what was deployed, which
outlives the configs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

HISTORY_LIMIT = 50  # status events kept per deployment, newest last


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True, slots=True, kw_only=True)
class StatusEvent:
    at: str
    status: str
    message: str


def deployment_key(model: str, version: str, config_id: str) -> str:
    """One deployment's key in the catalog (and in the operator's memos): a
    version as one config declared it."""
    return f"{model}/{version}/{config_id}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Deployment:
    """One version of one model as deployed from one config."""

    model: str
    version: str
    config_id: str
    runtime: str
    manifest: str  # the YAML as the user wrote it
    parameters: Mapping[str, Any]  # the manifest's spec, as parsed
    labels: Mapping[str, str]  # metadata.labels
    image: str
    image_digest: str = ""
    artifact_uri: str = ""
    artifact_sha256: str = ""
    run_id: str = ""
    deployed_at: str = ""
    status: str = ""
    history: tuple[StatusEvent, ...] = field(default=())

    @property
    def key(self) -> str:
        return deployment_key(self.model, self.version, self.config_id)

    def with_status(self, status: str, message: str, at: str) -> Deployment:
        """This record with ``status`` appended, unless it is already the latest."""
        if self.history and (self.history[-1].status, self.history[-1].message) == (
                status, message):
            return self
        history = (*self.history, StatusEvent(at=at, status=status, message=message))
        return replace(self, status=status, history=history[-HISTORY_LIMIT:])

    def to_doc(self) -> dict[str, Any]:
        return {
            "model": self.model, "version": self.version, "configId": self.config_id,
            "runtime": self.runtime, "manifest": self.manifest,
            "parameters": dict(self.parameters), "labels": dict(self.labels),
            "image": self.image, "imageDigest": self.image_digest,
            "artifactUri": self.artifact_uri, "artifactSha256": self.artifact_sha256,
            "runId": self.run_id, "deployedAt": self.deployed_at, "status": self.status,
            "history": [{"at": e.at, "status": e.status, "message": e.message}
                        for e in self.history],
        }

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Deployment:
        return cls(
            model=str(doc["model"]), version=str(doc["version"]),
            config_id=str(doc["configId"]), runtime=str(doc.get("runtime", "")),
            manifest=str(doc.get("manifest", "")), parameters=dict(doc.get("parameters") or {}),
            labels={str(k): str(v) for k, v in (doc.get("labels") or {}).items()},
            image=str(doc.get("image", "")), image_digest=str(doc.get("imageDigest", "")),
            artifact_uri=str(doc.get("artifactUri", "")),
            artifact_sha256=str(doc.get("artifactSha256", "")),
            run_id=str(doc.get("runId", "")), deployed_at=str(doc.get("deployedAt", "")),
            status=str(doc.get("status", "")),
            history=tuple(StatusEvent(at=str(e["at"]), status=str(e["status"]),
                                      message=str(e.get("message", "")))
                          for e in doc.get("history") or ()),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_doc(), sort_keys=True)


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """Filters for ``Catalog.find``; every given one must hold."""

    name: str | None = None
    version: str | None = None
    runtime: str | None = None
    status: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, d: Deployment) -> bool:
        return ((self.name is None or d.model == self.name)
                and (self.version is None or d.version == self.version)
                and (self.runtime is None or d.runtime == self.runtime)
                and (self.status is None or d.status.lower() == self.status.lower())
                and all(d.labels.get(k) == v for k, v in self.labels.items()))


def newest_first(items: list[Deployment]) -> list[Deployment]:
    return sorted(items, key=lambda d: (d.deployed_at, d.key), reverse=True)


class Catalog(Protocol):
    async def record_deployment(self, deployment: Deployment) -> None:
        """Insert or replace the record; its status history is kept."""

    async def record_status(self, key: str, status: str, message: str, at: str) -> None:
        """Append a status event to the deployment ``key`` (no-op if unknown or unchanged)."""

    async def find(self, query: Query) -> list[Deployment]:
        """Deployments matching ``query``, newest first."""

    async def get(self, key: str) -> Deployment | None: ...
