"""The default catalog: one Docker config per deployment, needing no extra server.

Swarm keeps configs in its replicated store, on every manager, so the
catalog is as durable as the cluster's own state. A config's data (the
manifest, its parameters and digests) never changes; what does (status,
history, image) lives in its labels, updated with the engine's optimistic
concurrency. Catalog configs carry no ``aiart.model`` label, so the
operator never mistakes one for a model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Protocol

from aiart.catalog.records import Deployment, Query, newest_first
from aiart.core.errors import TransientError
from aiart.core.objects import ConfigObject

KIND = "aiart.catalog"
KIND_VALUE = "deployment"
MODEL = "aiart.catalog.model"
VERSION = "aiart.catalog.version"
RUNTIME = "aiart.catalog.runtime"
STATUS = "aiart.catalog.status"
HISTORY = "aiart.catalog.history"
IMAGE = "aiart.catalog.image"
IMAGE_DIGEST = "aiart.catalog.image-digest"
KEY = "aiart.catalog.key"
MUTABLE = ("status", "history", "image", "imageDigest")
WRITE_TRIES = 5


class ConfigStore(Protocol):
    async def list_configs(self, label: str) -> list[ConfigObject]: ...
    async def get_config(self, name: str) -> ConfigObject | None: ...
    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> None: ...
    async def update_config_labels(
        self, config: ConfigObject, labels: Mapping[str, str]
    ) -> ConfigObject | None: ...


CATALOG_PREFIX = "aiart-catalog-"


def config_name(key: str) -> str:
    # Docker config names allow 64 characters; a model/version/config id may not fit.
    return f"{CATALOG_PREFIX}{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def _labels(d: Deployment) -> dict[str, str]:
    return {
        KIND: KIND_VALUE, KEY: d.key, MODEL: d.model, VERSION: d.version, RUNTIME: d.runtime,
        STATUS: d.status, IMAGE: d.image, IMAGE_DIGEST: d.image_digest,
        HISTORY: json.dumps([{"at": e.at, "status": e.status, "message": e.message}
                             for e in d.history]),
    }


def _record(config: ConfigObject) -> Deployment:
    doc: dict[str, Any] = json.loads(config.data)
    labels = config.labels
    doc.update(status=labels.get(STATUS, ""), image=labels.get(IMAGE, ""),
               imageDigest=labels.get(IMAGE_DIGEST, ""),
               history=json.loads(labels.get(HISTORY) or "[]"))
    return Deployment.from_doc(doc)


class DockerCatalog:
    def __init__(self, configs: ConfigStore) -> None:
        self.configs = configs

    async def _find_config(self, key: str) -> ConfigObject | None:
        return await self.configs.get_config(config_name(key))

    async def record_deployment(self, deployment: Deployment) -> None:
        for _ in range(WRITE_TRIES):
            config = await self._find_config(deployment.key)
            if config is None:
                doc = {k: v for k, v in deployment.to_doc().items() if k not in MUTABLE}
                try:
                    await self.configs.create_config(
                        config_name(deployment.key), json.dumps(doc, sort_keys=True).encode(),
                        _labels(deployment))
                    return
                except TransientError:
                    continue  # created meanwhile by another writer: update instead
            old = _record(config)
            merged = Deployment.from_doc({**deployment.to_doc(), "status": old.status,
                                          "history": old.to_doc()["history"]})
            wanted = {**config.labels, **_labels(merged)}
            if wanted == dict(config.labels):
                return  # nothing new: no write, no event
            if await self.configs.update_config_labels(config, wanted) is not None:
                return
        raise TransientError(f"catalog record {deployment.key} kept changing; will retry")

    async def record_status(self, key: str, status: str, message: str, at: str) -> None:
        for _ in range(WRITE_TRIES):
            config = await self._find_config(key)
            if config is None:
                return
            old = _record(config)
            new = old.with_status(status, message, at)
            if new is old:
                return
            if await self.configs.update_config_labels(
                    config, {**config.labels, **_labels(new)}) is not None:
                return
        raise TransientError(f"catalog record {key} kept changing; will retry")

    async def find(self, query: Query) -> list[Deployment]:
        label = f"{MODEL}={query.name}" if query.name else f"{KIND}={KIND_VALUE}"
        records = [_record(c) for c in await self.configs.list_configs(label)
                   if c.labels.get(KIND) == KIND_VALUE]
        return newest_first([d for d in records if query.matches(d)])

    async def get(self, key: str) -> Deployment | None:
        config = await self._find_config(key)
        return _record(config) if config is not None else None

