"""A test identity provider: an RSA key pair that signs JWTs, and its JWKS
served over HTTP, as an OIDC issuer (Keycloak, say) publishes it."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

ISSUER = "https://login.example.test/realms/factory"


class Signer:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return {**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def token(self, **claims: Any) -> str:
        body = {"iss": ISSUER, "aud": "aiart", "sub": "alice", "exp": time.time() + 300,
                **claims}
        return jwt.encode(body, self.key, algorithm="RS256", headers={"kid": self.kid})


@contextmanager
def serve_jwks(signer: Signer, host: str = "127.0.0.1") -> Iterator[int]:
    """Serve ``{"keys": [signer's key]}`` at any path; yield the port."""
    document = json.dumps({"keys": [signer.jwk()]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


# Fixtures for the modules that verify tokens (imported there by name).
@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer("k1")


@pytest.fixture(scope="module")
def jwks_url(signer: Signer) -> Iterator[str]:
    with serve_jwks(signer) as port:
        yield f"http://127.0.0.1:{port}/certs"


class Provider:
    """An OIDC provider's sign-in for the tests: discovery, an authorization
    endpoint that signs ``subject`` in at once (as a provider does for a
    person with a session there) and sends the browser back with a code, a
    token endpoint that takes the code once, with the PKCE verifier of its
    challenge (S256) and the client's secret, and the key set. What it was
    asked is kept in ``seen``."""

    def __init__(self, signer: Signer, *, client_id: str, client_secret: str) -> None:
        self.signer, self.client_id, self.client_secret = signer, client_id, client_secret
        self.subject = "alice"
        self.roles: list[str] = ["aiart:deployer"]
        self.codes: dict[str, tuple[str, str]] = {}  # code -> (challenge, redirect_uri)
        self.seen: list[tuple[str, dict[str, str]]] = []
        self.url = ""

    def authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        if query.get("client_id") != self.client_id or query.get(
                "code_challenge_method") != "S256" or not query.get("code_challenge"):
            return 400, {}, b"bad authorization request"
        code = secrets.token_urlsafe(16)
        self.codes[code] = (query["code_challenge"], query["redirect_uri"])
        back = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        return 302, {"Location": back}, b""

    def token(self, form: dict[str, str], authorization: str) -> tuple[int, dict[str, Any]]:
        expected = base64.b64encode(f"{self.client_id}:{self.client_secret}".encode()).decode()
        if authorization != f"Basic {expected}":
            return 401, {"error": "invalid_client"}
        challenge, redirect_uri = self.codes.pop(form.get("code", ""), ("", ""))
        verifier = form.get("code_verifier", "")
        derived = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(
            b"=").decode()
        if not challenge or derived != challenge or form.get("redirect_uri") != redirect_uri:
            return 400, {"error": "invalid_grant"}
        token = self.signer.token(sub=self.subject, azp=self.client_id,
                                  realm_access={"roles": self.roles})
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": 300}


@contextmanager
def serve_provider(provider: Provider, host: str = "127.0.0.1") -> Iterator[Provider]:
    jwks = json.dumps({"keys": [provider.signer.jwk()]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def answer(self, status: int, body: bytes, headers: dict[str, str] | None = None,
                   kind: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            params = dict(parse_qsl(query))
            provider.seen.append((path, params))
            if path == "/.well-known/openid-configuration":
                self.answer(200, json.dumps({
                    "issuer": ISSUER, "authorization_endpoint": f"{provider.url}/auth",
                    "token_endpoint": f"{provider.url}/token",
                    "jwks_uri": f"{provider.url}/certs"}).encode())
            elif path == "/auth":
                status, headers, body = provider.authorize(params)
                self.answer(status, body, headers, "text/plain")
            else:
                self.answer(200, jwks)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = dict(parse_qsl(self.rfile.read(length).decode()))
            provider.seen.append((self.path, form))
            status, body = provider.token(form, self.headers.get("Authorization", ""))
            self.answer(status, json.dumps(body).encode())

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    provider.url = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        server.shutdown()
        server.server_close()
