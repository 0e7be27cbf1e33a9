"""API keys kept as Docker configs: the record (name, role, models and the
secret's SHA-256, never the secret) in the config's data, in the swarm's
replicated store. Revoking a key removes its config; the auth service sees
it gone on its next refresh (every second)."""

from __future__ import annotations

import os
from pathlib import Path

from aiart.auth.access import PROBE_KEY_FILE, AccessError, ApiKey
from aiart.core import labels as L
from aiart.engine.adapter import DockerCluster

KEY_PREFIX = "aiart-apikey-"


class KeyStore:
    def __init__(self, cluster: DockerCluster) -> None:
        self.cluster = cluster

    async def add(self, key: ApiKey) -> None:
        await self.cluster.create_config(f"{KEY_PREFIX}{key.id}", key.to_json(), {
            L.API_KEY: key.id, f"{L.API_KEY}.name": key.name, f"{L.API_KEY}.role": key.role.value})

    async def keys(self) -> list[ApiKey]:
        keys = []
        for config in await self.cluster.list_configs(L.API_KEY):
            try:
                keys.append(ApiKey.from_json(config.data))
            except AccessError:
                continue  # not a record aiart wrote: it grants nothing
        return sorted(keys, key=lambda k: (k.created, k.name))

    async def revoke(self, name_or_id: str) -> list[ApiKey]:
        """Remove every key with this name or id; return what was removed."""
        removed = []
        for config in await self.cluster.list_configs(L.API_KEY):
            try:
                key = ApiKey.from_json(config.data)
            except AccessError:
                continue
            if name_or_id in (key.id, key.name) and await self.cluster.delete_config(config.id):
                removed.append(key)
        return removed


OPERATOR_KEY_NAME = "aiart-operator"


async def revoke_operator_key(store: KeyStore) -> None:
    """Remove the admin key that operators before probe tokens made for
    their probes (access.probe_token now lets them in, one version each)."""
    await store.revoke(OPERATOR_KEY_NAME)


def read_probe_key(path: str | None = None) -> bytes | None:
    """The key of the operator's probe tokens (a Docker secret that the
    operator and the auth service mount), if there is one."""
    file = Path(path or os.environ.get("AIART_PROBE_KEY_FILE") or PROBE_KEY_FILE)
    try:
        return file.read_bytes().strip() or None
    except OSError:
        return None
