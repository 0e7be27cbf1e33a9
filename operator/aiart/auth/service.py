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
import contextlib
import logging
import time
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aiart.auth.access import (
    KEY_ID,
    OPEN_PATHS,
    Decision,
    ModelPolicy,
    credential_from,
    decide_probe,
    decide_with_claims,
    decide_with_key,
    key_feed,
)
from aiart.auth.keystore import KeyCache
from aiart.auth.serving import serve_with_keys
from aiart.auth.tokens import TokenVerifier
from aiart.core.render import PROBE_HEADER
from aiart.core.settings import ProbeSettings, ServiceSettings

log = logging.getLogger("aiart.auth")
MODES = ("apikey", "oidc")
# How long a key feed request may wait for a change: well under the
# gateway plugin's own timeout, and under proxies' idle limits.
FEED_WAIT_SECONDS = 20.0


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

    async def feed(request: Request) -> Response:
        """The API keys for the gateway's plugin (access.key_feed), which
        asks again and again: with ``known`` (the tag it holds) and ``wait``
        the answer waits until the keys change, at most ``wait`` seconds,
        then is 304 if they did not, so a revoked key reaches the gateway
        as soon as this service reads its removal. ``id``: a key the
        gateway was just shown and does not know (a new one): read the
        swarm first, as for /verify."""
        query = request.query_params
        key_id = query.get("id", "")
        if key_id and KEY_ID.match(key_id):
            await keys.knows_id(key_id)
        if keys.loaded_at is None:
            return JSONResponse({"error": "the API keys have not been read yet"}, 503)
        try:
            wait = min(max(float(query.get("wait", "0") or 0), 0.0), FEED_WAIT_SECONDS)
        except ValueError:
            return JSONResponse({"error": "wait: a number of seconds"}, 400)
        known = query.get("known", "")
        tag, body = key_feed(keys.keys)
        if known == tag and wait:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await keys.changed()
            tag, body = key_feed(keys.keys)
        if known == tag:
            return Response(status_code=304, headers={"ETag": tag})
        return Response(body, media_type="application/json", headers={"ETag": tag})

    async def health(_: Request) -> Response:
        age = None if keys.loaded_at is None else round(time.monotonic() - keys.loaded_at, 1)
        return JSONResponse({"keys": len(keys.keys), "keysAgeSeconds": age},
                            status_code=200 if age is not None else 503)

    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return Starlette(routes=[Route("/verify", verify, methods=methods),
                             Route("/keys", feed), Route("/health", health)])


def main() -> None:
    verifier = TokenVerifier.from_env()
    from aiart.auth.keystore import read_probe_key

    probe_key = read_probe_key()
    if probe_key is None:
        log.warning("no probe key (%s): the operator cannot check closed models",
                    ProbeSettings.from_env().key_file)
    serve_with_keys(lambda _, keys: create_app(keys, verifier, probe_key),
                    port=ServiceSettings.from_env().auth_port,
                    what="aiart auth service", service_name="aiart-auth",
                    oidc_issuer=verifier.issuer if verifier else "none")


if __name__ == "__main__":
    main()
