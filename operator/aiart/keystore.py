"""API keys kept as Docker configs: the record (name, role, models and the
secret's SHA-256, never the secret) in the config's data, in the swarm's
replicated store. Revoking a key removes its config; the auth service sees
it gone on its next refresh (every second)."""

from __future__ import annotations

from .access import AccessError, ApiKey, Role, new_key
from .docker_adapter import DockerCluster

KEY_LABEL = "aiart.apikey"
KEY_PREFIX = "aiart-apikey-"


class KeyStore:
    def __init__(self, cluster: DockerCluster) -> None:
        self.cluster = cluster

    async def add(self, key: ApiKey) -> None:
        await self.cluster.create_config(f"{KEY_PREFIX}{key.id}", key.to_json(), {
            KEY_LABEL: key.id, f"{KEY_LABEL}.name": key.name, f"{KEY_LABEL}.role": key.role.value})

    async def keys(self) -> list[ApiKey]:
        keys = []
        for config in await self.cluster.list_configs(KEY_LABEL):
            try:
                keys.append(ApiKey.from_json(config.data))
            except AccessError:
                continue  # not a record aiart wrote: it grants nothing
        return sorted(keys, key=lambda k: (k.created, k.name))

    async def revoke(self, name_or_id: str) -> list[ApiKey]:
        """Remove every key with this name or id; return what was removed."""
        removed = []
        for config in await self.cluster.list_configs(KEY_LABEL):
            try:
                key = ApiKey.from_json(config.data)
            except AccessError:
                continue
            if name_or_id in (key.id, key.name) and await self.cluster.delete_config(config.id):
                removed.append(key)
        return removed


OPERATOR_KEY_NAME = "aiart-operator"


async def renew_operator_key(store: KeyStore) -> str:
    """A fresh key for the operator's own probes through the gateway; the
    previous operator's key is revoked. Held in memory only."""
    await store.revoke(OPERATOR_KEY_NAME)
    text, record = new_key(OPERATOR_KEY_NAME, Role.ADMIN, [])
    await store.add(record)
    return text
