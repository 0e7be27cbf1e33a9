"""API keys kept as Docker configs: the record (name, role, models and the
secret's SHA-256, never the secret) in the config's data, in the swarm's
replicated store. Revoking a key removes its config; the auth service sees
it gone on its next refresh (every second): ``KeyCache`` is what the auth
service and the API hold of them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Protocol

from aiart.auth.access import AccessError, ApiKey, parse_key
from aiart.core import labels as L
from aiart.core.objects import ConfigObject
from aiart.core.settings import ProbeSettings

log = logging.getLogger("aiart.auth")
KEY_PREFIX = L.API_KEY_CONFIG_PREFIX


class Configs(Protocol):
    """Where key records live: the engine's configs (DockerCluster)."""

    async def list_configs(self, label: str) -> list[ConfigObject]: ...
    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> None: ...
    async def delete_config(self, config_id: str) -> bool: ...


class KeyStore:
    def __init__(self, cluster: Configs) -> None:
        self.cluster = cluster

    async def add(self, key: ApiKey) -> None:
        await self.cluster.create_config(f"{KEY_PREFIX}{key.id}", key.to_json(), {
            L.API_KEY: key.id, L.API_KEY_NAME: key.name, L.API_KEY_ROLE: key.role.value})

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
    file = Path(path or ProbeSettings.from_env().key_file)
    try:
        return file.read_bytes().strip() or None
    except OSError:
        return None


# How soon a refresh asked for by a request may read the swarm again.
CATCH_UP_SECONDS = 0.25


class KeyCache:
    """The API keys, refreshed in the background."""

    def __init__(self, load: Callable[[], Awaitable[list[ApiKey]]], every: float = 1.0) -> None:
        self.load = load
        self.every = every
        self.keys: dict[str, ApiKey] = {}
        self.loaded_at: float | None = None
        self._read_started = float("-inf")  # of the read that self.keys comes from
        self._caught_up_at = float("-inf")
        self._catching_up = asyncio.Lock()
        # Set (and replaced) whenever the keys change: the key feed's
        # waiting readers (auth/service.py) answer at once.
        self._changed = asyncio.Event()

    async def refresh(self) -> None:
        started = time.monotonic()
        keys = {k.id: k for k in await self.load()}
        # Reads overlap (the periodic one, a catch-up): one that started
        # earlier and ends later must not put back what a newer one saw.
        if started >= self._read_started:
            changed = keys != self.keys or self.loaded_at is None
            self.keys, self._read_started = keys, started
            self.loaded_at = time.monotonic()
            if changed:
                self._changed, was = asyncio.Event(), self._changed
                was.set()

    async def changed(self) -> None:
        """Return when the keys change (callers bound the wait)."""
        await self._changed.wait()

    async def knows(self, text: str) -> None:
        """Read the keys again now if ``text`` names a key not read yet: a
        key is used as soon as it is made (the CLI prints it, a script sends
        it). At most one such read every ``CATCH_UP_SECONDS``, so unknown
        keys cannot make the engine be read in a loop; a request that comes
        sooner waits for the next read rather than being refused on keys
        older than itself."""
        parsed = parse_key(text)
        if parsed is not None:
            await self.knows_id(parsed[0])

    async def knows_id(self, key_id: str) -> None:
        """As ``knows``, for a key's id."""
        if key_id in self.keys:
            return
        asked = time.monotonic()
        async with self._catching_up:
            # Requests that queued here while one read ran are answered by
            # it if it started after they came: one read for all of them.
            if self._read_started >= asked or key_id in self.keys:
                return
            await asyncio.sleep(max(0.0, self._caught_up_at + CATCH_UP_SECONDS
                                    - time.monotonic()))
            self._caught_up_at = time.monotonic()
            try:
                await self.refresh()
            except Exception as exc:  # the periodic refresh says so too; decide on what we have
                log.warning("cannot read API keys: %s", exc)

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # keep the last keys; say so
                log.warning("cannot read API keys: %s; keeping the last %d", exc, len(self.keys))
            await asyncio.sleep(self.every)
