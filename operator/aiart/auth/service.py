"""``aiart-auth``: the forwardAuth target that guards model routes.

Traefik asks it about every request to a model whose manifest is not
public; it answers 200 (with ``X-Aiart-Subject``), 401 or 403 and never sees
a request body. It is stateless and runs in several replicas, apart from the
operator: model traffic does not depend on the operator being up. API keys
are re-read from the swarm every second, so a revoked key stops working
within about a second; if the engine cannot be read, the last keys read stay
in force (and the health endpoint says how old they are).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import anyio.to_thread
from aiart_runtime import logs, tracing
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiart.auth.access import (
    OPEN_PATHS,
    PROBE_KEY_FILE,
    ApiKey,
    Decision,
    ModelPolicy,
    credential_from,
    decide_probe,
    decide_with_claims,
    decide_with_key,
    parse_key,
)
from aiart.core.render import PROBE_HEADER

log = logging.getLogger("aiart.auth")
MODES = ("apikey", "oidc")
TOKEN_ALGORITHMS = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]
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

    async def refresh(self) -> None:
        started = time.monotonic()
        keys = {k.id: k for k in await self.load()}
        # Reads overlap (the periodic one, a catch-up): one that started
        # earlier and ends later must not put back what a newer one saw.
        if started >= self._read_started:
            self.keys, self._read_started = keys, started
            self.loaded_at = time.monotonic()

    async def knows(self, text: str) -> None:
        """Read the keys again now if ``text`` names a key not read yet: a
        key is used as soon as it is made (the CLI prints it, a script sends
        it). At most one such read every ``CATCH_UP_SECONDS``, so unknown
        keys cannot make the engine be read in a loop."""
        parsed = parse_key(text)
        if parsed is None or parsed[0] in self.keys:
            return
        if time.monotonic() - self._caught_up_at < CATCH_UP_SECONDS:
            return
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
        issuer = os.environ.get("AIART_OIDC_ISSUER", "").rstrip("/")
        if not issuer:
            return None
        jwks = os.environ.get("AIART_OIDC_JWKS_URL") or (
            f"{issuer}/protocol/openid-connect/certs")  # Keycloak's path
        clients = tuple(c.strip() for c in os.environ.get("AIART_OIDC_CLIENTS", "").split(",")
                        if c.strip())
        try:
            return cls(issuer=issuer, audience=os.environ.get("AIART_OIDC_AUDIENCE", "").strip(),
                       jwks_url=jwks, clients=clients,
                       roles_claim=os.environ.get("AIART_OIDC_ROLES_CLAIM") or "realm_access.roles",
                       role_prefix=os.environ.get("AIART_OIDC_ROLE_PREFIX", "aiart:"))
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


def _answer(decision: Decision, mode: str) -> Response:
    if decision.status == 200:
        return Response(status_code=200, headers={"X-Aiart-Subject": decision.subject})
    headers = {}
    if decision.status == 401:
        headers["WWW-Authenticate"] = (
            'Bearer realm="aiart"' if mode == "oidc" else 'ApiKey realm="aiart"')
    return JSONResponse({"error": decision.reason}, status_code=decision.status, headers=headers)


def create_app(keys: KeyCache, verifier: TokenVerifier | None,
               probe_key: bytes | None = None) -> Starlette:
    async def verify(request: Request) -> Response:
        query = request.query_params
        model, mode = query.get("model", ""), query.get("mode", "")
        if not model or mode not in MODES:
            # Only aiart writes these addresses: a bad one is a bug; fail closed.
            return _answer(Decision(403, "this route's guard is misconfigured"), mode)
        policy = ModelPolicy(model=model, mode=mode,
                             scopes=tuple(s for s in query.get("scopes", "").split(",") if s))
        method = request.headers.get("x-forwarded-method", request.method).upper()
        path = urlsplit(request.headers.get("x-forwarded-uri", "")).path
        if method in ("GET", "HEAD") and OPEN_PATHS.match(path):
            return _answer(Decision(200, "health", subject="anonymous"), mode)
        probe = decide_probe(probe_key, model, query.get("version", ""),
                             request.headers.get(PROBE_HEADER, ""))
        if probe is not None:
            return _answer(probe, mode)
        credential = credential_from(request.headers)
        if credential is not None and credential[0] == "apikey":
            await keys.knows(credential[1])
        if mode == "apikey":
            if credential is None or credential[0] != "apikey":
                return _answer(Decision(401, f"model {model!r} needs an aiart API key "
                                             "(X-API-Key or Authorization: Bearer)"), mode)
            return _answer(decide_with_key(policy, keys.keys, credential[1]), mode)
        if credential is not None and credential[0] == "apikey":
            # Service principals: an admin key that covers the model stands
            # in for a token.
            return _answer(decide_with_key(policy, keys.keys, credential[1], admin_only=True),
                           mode)
        if verifier is None:
            return _answer(Decision(401, "OIDC is not configured on this gateway"), mode)
        if credential is None or credential[0] != "bearer":
            return _answer(Decision(401, f"model {model!r} needs a bearer token from "
                                         f"{verifier.issuer}"), mode)
        try:
            claims = await verifier.claims(credential[1])
        except ValueError as exc:
            return _answer(Decision(401, f"the token is not valid: {exc}"), mode)
        return _answer(decide_with_claims(policy, claims), mode)

    async def health(_: Request) -> Response:
        age = None if keys.loaded_at is None else round(time.monotonic() - keys.loaded_at, 1)
        return JSONResponse({"keys": len(keys.keys), "keysAgeSeconds": age},
                            status_code=200 if age is not None else 503)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/verify", verify, methods=methods),
                             Route("/health", health)])


def internal_tls(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """The certificate and key files (uvicorn's) from AIART_INTERNAL_TLS_CERT_FILE and
    AIART_INTERNAL_TLS_KEY_FILE: the auth service and the API take callers'
    credentials from the gateway, which may run on another node, so they
    speak HTTPS only (docs/security.md). Neither set: plain HTTP (tests)."""
    env = os.environ if env is None else env
    cert = env.get("AIART_INTERNAL_TLS_CERT_FILE", "").strip()
    key = env.get("AIART_INTERNAL_TLS_KEY_FILE", "").strip()
    if bool(cert) != bool(key):
        raise SystemExit("AIART_INTERNAL_TLS_CERT_FILE and AIART_INTERNAL_TLS_KEY_FILE "
                         "go together")
    return (cert, key) if cert else (None, None)


def serve_with_keys(build: Callable[[Any, KeyCache], Any], *, port_variable: str,
                    what: str, service_name: str, **fields: str) -> None:
    """Run an app that needs the API keys (this service, aiart's API): an
    engine connection, the key cache refreshed in the background, uvicorn."""
    import aiodocker
    import uvicorn

    from aiart.auth.keystore import KeyStore
    from aiart.engine.adapter import DockerCluster

    logs.configure(os.environ.get("AIART_LOG_LEVEL", "INFO"))
    traced = tracing.configure(service_name)

    async def serve() -> None:
        async with aiodocker.Docker() as docker:
            cluster = DockerCluster(docker)
            keys = KeyCache(KeyStore(cluster).keys,
                            float(os.environ.get("AIART_AUTH_REFRESH_SECONDS", "1")))
            refresher = asyncio.create_task(keys.run())
            app = build(cluster, keys)
            if traced:
                app = tracing.TracingMiddleware(app, "aiart")
            cert, key = internal_tls()
            config = uvicorn.Config(app, host="0.0.0.0",
                                    port=int(os.environ.get(port_variable, "8000")),
                                    log_config=None, access_log=False,
                                    ssl_certfile=cert, ssl_keyfile=key)
            log.info("%s started", what, extra={"fields": fields})
            try:
                await uvicorn.Server(config).serve()
            finally:
                refresher.cancel()

    asyncio.run(serve())


def main() -> None:
    verifier = TokenVerifier.from_env()
    from aiart.auth.keystore import read_probe_key

    probe_key = read_probe_key()
    if probe_key is None:
        log.warning("no probe key (%s): the operator cannot check closed models",
                    os.environ.get("AIART_PROBE_KEY_FILE") or PROBE_KEY_FILE)
    serve_with_keys(lambda _, keys: create_app(keys, verifier, probe_key),
                    port_variable="AIART_AUTH_PORT",
                    what="aiart auth service", service_name="aiart-auth",
                    oidc_issuer=verifier.issuer if verifier else "none")


if __name__ == "__main__":
    main()
