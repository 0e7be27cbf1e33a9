"""OIDC bearer tokens, verified against the issuer's key set."""

from __future__ import annotations

import logging
from typing import Any

import anyio.to_thread

from aiart.core.settings import OIDCSettings

log = logging.getLogger("aiart.auth")
TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


class TokenVerifier:
    """OIDC bearer tokens: a JWT signed by a key from the issuer's JWKS, for
    aiart's audience, requested by one of aiart's clients.

    An issuer serves many applications; a token that one of them holds must
    not open aiart. So the audience is required, ``azp`` (the client the
    token was issued to) must be an allowed client when the token names one,
    and API roles come only from a namespaced claim (``role_prefix``)."""

    def __init__(self, *, issuer: str, audience: str, jwks_url: str,
                 clients: tuple[str, ...] = (), roles_claim: str = "realm_access.roles",
                 role_prefix: str = "aiart:") -> None:
        import jwt

        if not audience:
            raise ValueError("AIART_OIDC_AUDIENCE is required with AIART_OIDC_ISSUER: "
                             "without it, a token the issuer made for any other "
                             "application would be taken")
        self.jwt = jwt
        self.issuer, self.audience = issuer, audience
        self.clients = clients or (audience,)
        self.roles_claim, self.role_prefix = roles_claim, role_prefix
        # PyJWKClient caches the key set and refetches it for an unknown key id.
        self.jwks = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)

    @classmethod
    def from_env(cls) -> TokenVerifier | None:
        """The site's OIDC settings; None when OIDC is off. A configuration
        that cannot be safe (no audience) turns OIDC off with an error in
        the log: API keys keep working, tokens are refused."""
        settings = OIDCSettings.from_env()
        if not settings.issuer:
            return None
        jwks = settings.jwks_url or (
            f"{settings.issuer}/protocol/openid-connect/certs")  # Keycloak's path
        try:
            return cls(issuer=settings.issuer, audience=settings.audience, jwks_url=jwks,
                       clients=settings.clients, roles_claim=settings.roles_claim,
                       role_prefix=settings.role_prefix)
        except ValueError as exc:
            log.error("OIDC is off: %s", exc)
            return None

    async def claims(self, token: str) -> dict[str, Any]:
        """The token's claims; ValueError with the reason when it is not valid."""
        jwt = self.jwt
        try:
            key = await anyio.to_thread.run_sync(self.jwks.get_signing_key_from_jwt, token)
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=TOKEN_ALGORITHMS, issuer=self.issuer,
                audience=self.audience, leeway=30, options={"require": ["exp", "iss", "aud"]})
        except jwt.PyJWKClientError as exc:
            raise ValueError(f"no key to check it with: {exc}") from None
        except jwt.InvalidTokenError as exc:
            raise ValueError(str(exc)) from None
        azp = claims.get("azp")
        if azp is not None and azp not in self.clients:
            raise ValueError(f"the token was issued to client {azp!r}, not to aiart")
        return claims
