"""Readiness as users see it: requests through the gateway (Traefik)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import aiohttp
from opentelemetry.propagate import inject

from aiart.auth.access import probe_token
from aiart.core.render import PROBE_HEADER
from aiart.core.traffic import NO_WAKE_HEADER

_TIMEOUT = aiohttp.ClientTimeout(total=3)


class Gateway:
    def __init__(self, base_url: str, session: aiohttp.ClientSession,
                 probe_key: bytes | None = None, host: str = "") -> None:
        self.base_url = base_url.rstrip("/")
        self.session = session
        # Routes that answer one host name only (AIART_GATEWAY_HOST) are
        # probed under that name.
        self.host = host
        # Closed versions let the operator's probes in by a token of that
        # version alone (access.probe_token), never by a platform credential.
        self.probe_key = probe_key

    def _probe_headers(self, name: str, versions: Iterable[str]) -> dict[str, str]:
        if not self.probe_key:
            return {}
        return {PROBE_HEADER: ",".join(probe_token(self.probe_key, name, v) for v in versions)}

    async def _get(self, path: str, method: str = "GET", body: bytes | None = None,
                   probe: Mapping[str, str] | None = None) -> tuple[int, Any]:
        try:
            # Never held by the activator for a sleeping model (it would
            # hold this pass with it): a probe just finds no route there.
            headers = {NO_WAKE_HEADER: "1", **(probe or {})}
            if self.host:
                headers["Host"] = self.host
            inject(headers)  # traceparent, when the operator traces this probe
            async with self.session.request(method, self.base_url + path, data=body,
                                            headers=headers, timeout=_TIMEOUT) as response:
                if response.content_type != "application/json":
                    return response.status, None
                return response.status, await response.json()
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            return 0, None

    async def version_ready(self, name: str, version: str) -> bool:
        # Through the version's base URL, which strips /models/<m>/versions/<v>:
        # the server sees the plain model-ready path every OIP server has.
        status, body = await self._get(
            f"/models/{name}/versions/{version}/v2/models/{name}/ready")
        return status == 200 and isinstance(body, dict) and body.get("ready") is True

    async def contract_problems(self, name: str, version: str, *,
                                settled: bool = True) -> list[str] | None:
        """What a version's server gets wrong of the inference contract; None
        while it does not answer at all (starting, or no route yet). A 404
        to every call is also what the gateway answers before it has read
        the version's route (seconds late on a busy host): until ``settled``
        that is None too, not a verdict."""
        base = f"/models/{name}/versions/{version}"
        probe = self._probe_headers(name, [version])
        problems = []
        statuses = []
        checks = [
            ("GET", "/v2/health/live", None),
            ("GET", "/v2/health/ready", None),
            ("GET", f"/v2/models/{name}", None),
            ("POST", f"/v2/models/{name}/infer", b"{}"),
        ]
        for method, path, payload in checks:
            status, body = await self._get(base + path, method, payload, probe)
            if status == 0 or status in (502, 503, 504):
                return None
            statuses.append(status)
            if method == "POST":
                # An empty request must be refused as a bad request, not as an
                # unknown path: that proves the infer path exists.
                if status in (404, 405):
                    problems.append(f"{method} {path} answered {status}")
            elif status != 200 or not isinstance(body, dict):
                problems.append(f"{method} {path} answered {status}"
                                + ("" if status != 200 else " without a JSON object"))
            elif path == f"/v2/models/{name}":
                missing = [k for k in ("name", "platform", "inputs", "outputs") if k not in body]
                if missing:
                    problems.append(f"model metadata lacks {', '.join(missing)}")
        if not settled and set(statuses) == {404}:
            return None
        return problems

    async def current_version(self, name: str, versions: Sequence[str]) -> str | None:
        """The version that answers the model's unversioned route, if any;
        ``versions`` are those that may (each one's probe token is sent)."""
        status, body = await self._get(f"/v2/models/{name}",
                                       probe=self._probe_headers(name, versions))
        if status != 200 or not isinstance(body, dict):
            return None
        answered = body.get("versions")
        return str(answered[0]) if isinstance(answered, list) and answered else None
