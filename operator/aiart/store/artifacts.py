"""Fetching a version's artifact from where its manifest says it is: a
config, the object store, or a training run in it (the operator's builds and
the CLI's model packages)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol

from aiart.core.errors import ObjectMissing, PermanentError
from aiart.core.objects import ConfigObject
from aiart.core.spec import Artifact
from aiart.core.store_layout import ConfigRef, RunRef, S3Ref
from aiart.store.client import Store
from aiart.store.runs import fetch_run_model


class Configs(Protocol):
    """Where a config:// artifact is (the engine's configs)."""

    async def get_config(self, name: str) -> ConfigObject | None: ...


@dataclass(frozen=True, slots=True)
class Fetched:
    data: bytes
    name: str  # how messages call it
    sha256: str
    uri: str
    run_id: str = ""


async def fetch_artifact(cluster: Configs, store: Store | None, artifact: Artifact) -> Fetched:
    """The artifact's bytes, checked against the manifest's sha256.

    PermanentError when it is missing or wrong (the user must act);
    TransientError (from the store or the engine) when a dependency is away.
    """
    ref = artifact.ref
    run_id = ""
    if isinstance(ref, ConfigRef):
        config = await cluster.get_config(ref.name)
        if config is None:
            raise PermanentError(
                f"artifact config {ref.name!r} does not exist; create it with "
                f"'docker config create {ref.name} model.pkl'")
        data, name = config.data, ref.name
    else:
        if store is None:
            raise PermanentError(
                f"artifact {artifact.uri} needs the object store, and none is configured "
                "here (AIART_S3_ENDPOINT)")
        try:
            if isinstance(ref, S3Ref):
                data, name = await store.get(ref.bucket, ref.key), str(ref)
            else:
                assert isinstance(ref, RunRef)
                data, record = await fetch_run_model(store, ref)
                name, run_id = artifact.uri, record.run_id
        except ObjectMissing as exc:
            raise PermanentError(f"artifact {artifact.uri} is not in the object store "
                                 f"({exc})") from None
    digest = hashlib.sha256(data).hexdigest()
    if artifact.sha256 and artifact.sha256 != digest:
        raise PermanentError(
            f"artifact {name!r} has sha256 {digest}, but the manifest expects {artifact.sha256}")
    return Fetched(data=data, name=name, sha256=digest, uri=artifact.uri, run_id=run_id)
