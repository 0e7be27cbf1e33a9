"""Signing in to the dashboard through the site's OIDC provider: the
authorization code flow with PKCE, through Authlib, against a test provider
served over HTTP (tests/oidc.py; no Keycloak runs here), the real PyJWT
checks of the token it gives, and the dashboard's pages and API calls with
it. Refused: a sign-in this browser did not start, a code used twice, an
account with no aiart role."""

from __future__ import annotations

from collections.abc import Iterator
from http.cookies import Morsel, SimpleCookie
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiart.api.app import create_app
from aiart.auth.access import KEY_COOKIE, UI_HEADER
from aiart.auth.keystore import KeyCache, KeyStore
from aiart.auth.tokens import TokenVerifier
from aiart.ui.oidc import OidcSignIn
from aiart.ui.pages import OIDC_COOKIE, ROUTES
from starlette.testclient import TestClient

from tests.fakes import FakeCluster, FakeStore
from tests.oidc import ISSUER, Provider, Signer, serve_provider, signer  # noqa: F401

CLIENT = "aiart-ui"


@pytest.fixture
def provider(signer: Signer) -> Iterator[Provider]:  # noqa: F811
    with serve_provider(Provider(signer, client_id=CLIENT, client_secret="s3cret")) as p:
        yield p


def dashboard(provider: Provider, *, signin: bool = True) -> TestClient:
    cluster = FakeCluster()
    verifier = TokenVerifier(issuer=ISSUER, audience="aiart", jwks_url=f"{provider.url}/certs",
                             clients=(CLIENT,))
    app = create_app(cluster, FakeStore(), KeyCache(KeyStore(cluster).keys), verifier,
                     pages=ROUTES)
    app.state.signin = OidcSignIn(
        issuer=ISSUER, client_id=CLIENT, client_secret="s3cret",
        discovery_url=f"{provider.url}/.well-known/openid-configuration") if signin else None
    return TestClient(app, follow_redirects=False)


def set_cookie(response: httpx.Response, name: str) -> Morsel[str]:
    """The first cookie ``name`` the response sets, with its attributes."""
    for header in response.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie(header)
        if name in cookie:
            return cookie[name]
    raise AssertionError(f"no cookie {name} set: {response.headers}")


def to_provider_and_back(client: TestClient, next_page: str = "/ui/deploy") -> str:
    """Start a sign-in, let the provider sign the person in; the callback's
    path and query, as the browser is sent back."""
    started = client.get(f"/ui/oidc/start?next={next_page}")
    assert started.status_code == 303, started.text
    where = started.headers["location"]
    assert where.startswith(f"{urlsplit(client.app.state.signin.discovery_url).scheme}://")
    query = parse_qs(urlsplit(where).query)
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [CLIENT]
    kept = set_cookie(started, OIDC_COOKIE)
    assert kept["httponly"] and kept["samesite"].lower() == "lax"
    assert kept["path"] == "/ui/oidc/callback"
    back = httpx.get(where, follow_redirects=False)
    assert back.status_code == 302, back.text
    parts = urlsplit(back.headers["location"])
    return f"{parts.path}?{parts.query}"


def test_a_person_signs_in_through_the_provider_and_uses_the_dashboard(
        provider: Provider) -> None:
    with dashboard(provider) as client:
        assert 'id="oidc"' in client.get("/ui/login").text
        done = client.get(to_provider_and_back(client))
        assert done.status_code == 303 and done.headers["location"] == "/ui/deploy", done.text
        cookie = set_cookie(done, KEY_COOKIE)
        assert cookie["httponly"] and cookie["samesite"].lower() == "strict"
        # No longer than the token is valid (the provider gives 300 s).
        assert 0 < int(cookie["max-age"]) <= 300
        # The token, verified on every call: pages and the API as the person.
        page = client.get("/ui/deploy")
        assert page.status_code == 200 and "oidc:alice" in page.text
        assert client.get("/api/v1/models").status_code == 200
        # A deployer, not an admin.
        assert client.get("/ui/keys").status_code == 403
        # A change with the cookie needs the dashboard's header, as with a key.
        assert client.post("/api/v1/jobs", json={}).status_code == 401
        assert client.post("/api/v1/jobs", json={},
                           headers={UI_HEADER: "1"}).status_code == 400
    # The provider was sent the PKCE verifier and the client's secret, never a
    # cookie of the dashboard's.
    [(_, form)] = [(p, f) for p, f in provider.seen if p == "/token"]
    assert form["grant_type"] == "authorization_code" and form["code_verifier"]


def test_a_sign_in_not_started_in_this_browser_is_refused(provider: Provider) -> None:
    with dashboard(provider) as client:
        callback = to_provider_and_back(client)
    # Another browser (an attacker's page sending its own code): no state kept.
    with dashboard(provider) as other:
        refused = other.get(callback)
        assert refused.status_code == 401 and "not started in this browser" in refused.text
        assert KEY_COOKIE not in refused.headers.get("set-cookie", "")
    # This browser, with a state that is not the one it was given.
    with dashboard(provider) as client:
        callback = to_provider_and_back(client)
        forged = callback.replace("state=", "state=x")
        refused = client.get(forged)
        assert refused.status_code == 401 and KEY_COOKIE not in refused.headers.get(
            "set-cookie", "")


def test_a_code_is_taken_once(provider: Provider) -> None:
    with dashboard(provider) as client:
        callback = to_provider_and_back(client)
        assert client.get(callback).status_code == 303
        client.cookies.clear()
        again = to_provider_and_back(client)
        code = parse_qs(urlsplit(callback).query)["code"][0]
        replayed = again.replace(parse_qs(urlsplit(again).query)["code"][0], code)
        refused = client.get(replayed)
        assert refused.status_code == 401 and "gave no token" in refused.text


def test_an_account_with_no_aiart_role_is_refused(provider: Provider) -> None:
    provider.roles = ["admin", "other-app:admin"]
    with dashboard(provider) as client:
        refused = client.get(to_provider_and_back(client))
        assert refused.status_code == 401 and "has no aiart role" in refused.text
        assert KEY_COOKIE not in refused.headers.get("set-cookie", "")


def test_without_a_client_there_is_no_oidc_sign_in(provider: Provider) -> None:
    with dashboard(provider, signin=False) as client:
        assert 'id="oidc"' not in client.get("/ui/login").text
        assert client.get("/ui/oidc/start").status_code == 404
