"""OIDC tokens another application of the same issuer holds open nothing in
aiart. The real auth service and API apps, the real PyJWT verification,
against a JWKS served over HTTP by the test (no Keycloak runs here)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from aiart.api.views import Principal
from aiart.auth.access import ApiKey
from aiart.auth.keystore import KeyCache
from aiart.auth.service import create_app
from aiart.auth.tokens import TokenVerifier
from starlette.testclient import TestClient

from tests.oidc import ISSUER, Signer


@pytest.fixture
def auth(jwks_url: str) -> Iterator[TestClient]:
    async def no_keys() -> list[ApiKey]:
        return []

    verifier = TokenVerifier(issuer=ISSUER, audience="aiart", jwks_url=jwks_url)
    with TestClient(create_app(KeyCache(no_keys), verifier)) as client:
        yield client


def call(client: TestClient, token: str) -> int:
    return client.get("/verify?model=iris&version=1&mode=oidc&scopes=models:predict", headers={
        "X-Forwarded-Method": "POST", "X-Forwarded-Uri": "/v2/models/iris/infer",
        "Authorization": f"Bearer {token}"}).status_code


def test_a_token_for_another_client_of_the_same_issuer_is_refused(
        auth: TestClient, signer: Signer) -> None:
    scope = "openid models:predict"
    assert call(auth, signer.token(scope=scope, azp="aiart")) == 200
    assert call(auth, signer.token(scope=scope)) == 200  # no azp: the audience decides
    # Issued to the plant's MES for its own API, with the same scopes.
    assert call(auth, signer.token(scope=scope, aud="mes", azp="mes")) == 401
    # For aiart's audience but requested by another client.
    assert call(auth, signer.token(scope=scope, azp="mes")) == 401
    # No audience at all.
    assert call(auth, signer.token(scope=scope, aud=None)) == 401


def test_the_audience_is_required(monkeypatch: pytest.MonkeyPatch, jwks_url: str) -> None:
    with pytest.raises(ValueError, match="AIART_OIDC_AUDIENCE is required"):
        TokenVerifier(issuer=ISSUER, audience="", jwks_url=jwks_url)
    monkeypatch.setenv("AIART_OIDC_ISSUER", ISSUER)
    monkeypatch.delenv("AIART_OIDC_AUDIENCE", raising=False)
    assert TokenVerifier.from_env() is None  # OIDC off (logged), never open to any audience
    monkeypatch.setenv("AIART_OIDC_AUDIENCE", "aiart")
    monkeypatch.setenv("AIART_OIDC_CLIENTS", "aiart-cli, aiart-ui")
    verifier = TokenVerifier.from_env()
    assert verifier is not None and verifier.clients == ("aiart-cli", "aiart-ui")


@pytest.mark.parametrize(("claims", "role"), [
    ({"realm_access": {"roles": ["admin", "deployer"]}}, None),  # another app's roles
    ({"roles": ["aiart:admin"]}, None),  # not the configured claim
    ({"realm_access": {"roles": ["aiart-admin", "viewer"]}}, None),  # old spellings
    ({"realm_access": {"roles": ["offline_access", "aiart:deployer"]}}, "deployer"),
    ({"realm_access": {"roles": ["aiart:viewer", "aiart:admin"]}}, "admin"),
])
def test_api_roles_come_only_from_the_namespaced_claim(claims: dict, role: str | None) -> None:
    found = Principal.from_claims({"sub": "alice", **claims})
    assert (found.role.value if found else None) == role


def test_the_roles_claim_and_prefix_are_the_sites() -> None:
    claims = {"sub": "bob", "resource_access": {"aiart": {"roles": ["factory/deployer"]}}}
    found = Principal.from_claims(claims, roles_claim="resource_access.aiart.roles",
                                  prefix="factory/")
    assert found is not None and found.role.value == "deployer"
    assert Principal.from_claims(claims) is None
