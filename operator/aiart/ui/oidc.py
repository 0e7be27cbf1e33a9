"""Signing in to the dashboard with the site's OIDC provider (Keycloak, say):
OAuth 2's authorization code flow with PKCE (RFC 7636), through Authlib.

The browser goes to the provider, the person signs in there, and comes
back with a code, which the API exchanges (server to server, with the
client's secret where it has one) for an access token. That token is then
what the dashboard's sign-in cookie holds, and the API checks it on every
call as it checks any bearer token (auth/tokens.py): its issuer, audience,
client and aiart role. Nothing about the person is kept on the server.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client

from aiart.core.settings import OIDCSettings

# The provider's endpoints are read again after this long.
DISCOVERY_SECONDS = 3600


@dataclass(frozen=True, slots=True)
class Started:
    url: str  # the provider's authorization URL, for the browser
    state: str
    verifier: str  # PKCE's code verifier: kept by the browser, in a cookie


class OidcSignIn:
    def __init__(self, *, issuer: str, client_id: str, client_secret: str | None = None,
                 scopes: str = "openid", discovery_url: str | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.issuer = issuer.rstrip("/")
        self.client_id, self.client_secret, self.scopes = client_id, client_secret, scopes
        self.discovery_url = discovery_url or \
            f"{self.issuer}/.well-known/openid-configuration"
        self._transport = transport
        self._endpoints: tuple[float, dict[str, Any]] | None = None

    @classmethod
    def from_env(cls) -> OidcSignIn | None:
        """As configured (AIART_OIDC_UI_CLIENT_ID and the issuer), or None."""
        settings = OIDCSettings.from_env()
        if not (settings.issuer and settings.ui_client_id):
            return None
        secret = Path(settings.ui_client_secret_file).read_text().strip() \
            if settings.ui_client_secret_file else None
        return cls(issuer=settings.issuer, client_id=settings.ui_client_id,
                   client_secret=secret, scopes=settings.ui_scopes,
                   discovery_url=settings.ui_discovery_url or None)

    def _client(self, redirect_uri: str) -> AsyncOAuth2Client:
        return AsyncOAuth2Client(self.client_id, self.client_secret, scope=self.scopes,
                                 redirect_uri=redirect_uri, code_challenge_method="S256",
                                 timeout=15, transport=self._transport)

    async def endpoints(self) -> dict[str, Any]:
        """The provider's discovery document (its endpoints), checked to be
        the configured issuer's."""
        if self._endpoints and time.monotonic() - self._endpoints[0] < DISCOVERY_SECONDS:
            return self._endpoints[1]
        async with httpx.AsyncClient(timeout=15, transport=self._transport) as client:
            try:
                answer = await client.get(self.discovery_url)
                document: Any = answer.json()
            except (httpx.HTTPError, json.JSONDecodeError) as exc:
                raise SignInError(f"the OIDC provider's discovery document cannot be read "
                                  f"({self.discovery_url}): {exc}") from None
        if not isinstance(document, dict) or str(document.get("issuer", "")).rstrip(
                "/") != self.issuer:
            raise SignInError(f"{self.discovery_url} is not the discovery document of "
                              f"{self.issuer}")
        for name in ("authorization_endpoint", "token_endpoint"):
            if not str(document.get(name, "")).startswith(("https://", "http://")):
                raise SignInError(f"the OIDC provider gives no {name}")
        self._endpoints = (time.monotonic(), document)
        return document

    async def start(self, redirect_uri: str) -> Started:
        endpoints = await self.endpoints()
        verifier = generate_token(48)
        async with self._client(redirect_uri) as client:
            url, state = client.create_authorization_url(
                endpoints["authorization_endpoint"], code_verifier=verifier)
        return Started(url=url, state=state, verifier=verifier)

    async def finish(self, redirect_uri: str, code: str, verifier: str) -> str:
        """The access token the provider gives for ``code``."""
        endpoints = await self.endpoints()
        async with self._client(redirect_uri) as client:
            try:
                token = await client.fetch_token(endpoints["token_endpoint"], code=code,
                                                 code_verifier=verifier)
            except Exception as exc:  # Authlib's OAuth errors and httpx's alike
                raise SignInError(f"the OIDC provider gave no token: {exc}") from None
        access = token.get("access_token")
        if not isinstance(access, str) or not access:
            raise SignInError("the OIDC provider's answer holds no access token")
        return access


class SignInError(Exception):
    pass
