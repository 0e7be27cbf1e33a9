"""A test identity provider: an RSA key pair that signs JWTs, and its JWKS
served over HTTP, as an OIDC issuer (Keycloak, say) publishes it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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
