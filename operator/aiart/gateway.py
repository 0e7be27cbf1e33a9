"""Readiness as users see it: requests through the gateway (Traefik)."""

from __future__ import annotations

from typing import Any

import aiohttp

_TIMEOUT = aiohttp.ClientTimeout(total=3)


class Gateway:
    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session

    async def _get(self, path: str) -> tuple[int, Any]:
        try:
            async with self.session.get(self.base_url + path, timeout=_TIMEOUT) as response:
                if response.content_type != "application/json":
                    return response.status, None
                return response.status, await response.json()
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return 0, None

    async def version_ready(self, name: str, version: str) -> bool:
        status, body = await self._get(f"/v2/models/{name}/versions/{version}/ready")
        return status == 200 and isinstance(body, dict) and body.get("ready") is True

    async def current_version(self, name: str) -> str | None:
        """The version that answers the model's unversioned route, if any."""
        status, body = await self._get(f"/v2/models/{name}")
        if status != 200 or not isinstance(body, dict):
            return None
        versions = body.get("versions")
        return str(versions[0]) if isinstance(versions, list) and versions else None
