"""The forwardAuth service as Traefik calls it: API keys, OIDC tokens checked
against a JWKS served over HTTP here, revocation, open health paths."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiart.auth.access import ApiKey, Role, new_key, parse_key
from aiart.auth.keystore import CATCH_UP_SECONDS, KeyCache
from aiart.auth.service import create_app
from aiart.auth.tokens import TokenVerifier
from starlette.testclient import TestClient

from tests.oidc import ISSUER, Signer


@pytest.fixture
def world(jwks_url: str) -> Iterator[tuple[TestClient, KeyCache, dict[str, ApiKey], str]]:
    text, record = new_key("ci", Role.VIEWER, ["iris"])
    stored = {record.id: record}

    async def load() -> list[ApiKey]:
        return list(stored.values())

    keys = KeyCache(load)
    verifier = TokenVerifier(issuer=ISSUER, audience="aiart", jwks_url=jwks_url)
    with TestClient(create_app(keys, verifier)) as client:
        client.portal.call(keys.refresh)  # type: ignore[union-attr]
        yield client, keys, stored, text


def ask(client: TestClient, query: str, path: str = "/v2/models/iris/infer",
        method: str = "POST", **headers: str) -> Any:
    return client.get(f"/verify?{query}", headers={
        "X-Forwarded-Method": method, "X-Forwarded-Uri": path, **headers})


def test_api_keys(world) -> None:
    client, keys, stored, text = world
    q = "model=iris&mode=apikey"
    missing = ask(client, q)
    assert missing.status_code == 401 and "needs an aiart API key" in missing.json()["error"]
    assert missing.headers["www-authenticate"].startswith("ApiKey")
    ok = ask(client, q, **{"X-API-Key": text})
    assert ok.status_code == 200 and ok.headers["x-aiart-subject"] == "apikey:ci"
    assert ask(client, q, Authorization=f"Bearer {text}").status_code == 200
    assert ask(client, "model=wine&mode=apikey", **{"X-API-Key": text}).status_code == 403
    stored.clear()  # revoked
    client.portal.call(keys.refresh)  # type: ignore[union-attr]
    assert ask(client, q, **{"X-API-Key": text}).status_code == 401


def test_oidc_tokens(world, signer: Signer) -> None:
    client, _, _, text = world
    q = "model=iris&mode=oidc&scopes=models:predict"
    good = signer.token(scope="openid models:predict")
    ok = ask(client, q, Authorization=f"Bearer {good}")
    assert ok.status_code == 200 and ok.headers["x-aiart-subject"] == "oidc:alice"
    assert ask(client, q, Authorization=f"Bearer {signer.token(scope='openid')}"
               ).status_code == 403
    for bad in (signer.token(scope="models:predict", exp=time.time() - 600),
                signer.token(scope="models:predict", iss="https://evil.test"),
                signer.token(scope="models:predict", aud="someone-else"),
                Signer("k1").token(scope="models:predict"),  # same kid, other key
                Signer("k9").token(scope="models:predict"),  # a key the JWKS lacks
                "not-a-jwt"):
        answer = ask(client, q, Authorization=f"Bearer {bad}")
        assert answer.status_code == 401, bad
        assert answer.json()["error"].startswith("the token is not valid")
    # A user's aiart key is not a token; only an admin key stands in for one.
    assert ask(client, q, **{"X-API-Key": text}).status_code == 403


def test_health_paths_are_open_and_a_bad_guard_fails_closed(world) -> None:
    client, _, _, _ = world
    assert ask(client, "model=iris&mode=apikey", "/v2/models/iris/ready", "GET").status_code == 200
    assert ask(client, "model=iris&mode=apikey", "/v2/models/iris/ready", "POST"
               ).status_code == 401
    assert ask(client, "model=iris&mode=whatever").status_code == 403
    assert client.get("/health").json()["keys"] == 1


def test_a_probe_token_opens_its_own_version_only(jwks_url: str) -> None:
    from aiart.auth.access import probe_token

    async def no_keys() -> list[ApiKey]:
        return []

    key = b"probe-key-of-this-test"
    verifier = TokenVerifier(issuer=ISSUER, audience="aiart", jwks_url=jwks_url)
    with TestClient(create_app(KeyCache(no_keys), verifier, key)) as client:
        token = probe_token(key, "iris", "2")
        for mode in ("apikey", "oidc"):
            q = f"model=iris&version=2&mode={mode}"
            ok = ask(client, q, **{"X-Aiart-Probe": token})
            assert ok.status_code == 200 and ok.headers["x-aiart-subject"] == "aiart-probe"
            # Several versions' tokens at once (the current route's probe).
            assert ask(client, q, **{"X-Aiart-Probe": f"abc, {token}"}).status_code == 200
            for other in (f"model=iris&version=1&mode={mode}",
                          f"model=wine&version=2&mode={mode}",
                          f"model=iris&mode={mode}"):
                assert ask(client, other, **{"X-Aiart-Probe": token}).status_code == 401, other
        assert ask(client, "model=iris&version=2&mode=apikey",
                   **{"X-Aiart-Probe": probe_token(b"another key", "iris", "2")}
                   ).status_code == 401
    # Without a probe key configured, no token opens anything.
    with TestClient(create_app(KeyCache(no_keys), verifier)) as client:
        assert ask(client, "model=iris&version=2&mode=apikey",
                   **{"X-Aiart-Probe": probe_token(b"", "iris", "2")}).status_code == 401


def test_a_key_works_as_soon_as_it_is_made(jwks_url: str) -> None:
    """The periodic read is every second; a key used before it is read
    anyway, and unknown keys do not make the engine be read in a loop."""
    stored: dict[str, ApiKey] = {}
    reads = 0

    async def load() -> list[ApiKey]:
        nonlocal reads
        reads += 1
        return list(stored.values())

    keys = KeyCache(load, every=3600)
    verifier = TokenVerifier(issuer=ISSUER, audience="aiart", jwks_url=jwks_url)
    with TestClient(create_app(keys, verifier)) as client:
        client.portal.call(keys.refresh)  # type: ignore[union-attr]
        time.sleep(0.3)
        text, record = new_key("fresh", Role.VIEWER, ["iris"])
        stored[record.id] = record
        assert ask(client, "model=iris&mode=apikey", **{"X-API-Key": text}).status_code == 200
        # A key made right after an unknown one was tried works too: its
        # request waits for the next read rather than being refused.
        unknown, _ = new_key("never-stored", Role.VIEWER, ["iris"])
        assert ask(client, "model=iris&mode=apikey", **{"X-API-Key": unknown}
                   ).status_code == 401
        text, record = new_key("fresher", Role.VIEWER, ["iris"])
        stored[record.id] = record
        assert ask(client, "model=iris&mode=apikey", **{"X-API-Key": text}).status_code == 200
        # Unknown keys one after another: at most one read per CATCH_UP_SECONDS.
        before, started = reads, time.monotonic()
        for _ in range(6):
            unknown, _ = new_key("never-stored", Role.VIEWER, ["iris"])
            assert ask(client, "model=iris&mode=apikey", **{"X-API-Key": unknown}
                       ).status_code == 401
        elapsed = time.monotonic() - started
        assert reads - before <= elapsed / CATCH_UP_SECONDS + 1, (reads - before, elapsed)


async def test_unknown_keys_at_once_make_one_read() -> None:
    """Requests with keys not read yet that come together wait for one
    read of the engine between them, not one each."""
    import asyncio

    reads = 0

    async def load() -> list[ApiKey]:
        nonlocal reads
        reads += 1
        await asyncio.sleep(0.05)  # an engine that takes a moment
        return []

    keys = KeyCache(load)
    await keys.refresh()
    before = reads
    await asyncio.gather(*(keys.knows(new_key("x", Role.VIEWER, ["iris"])[0])
                           for _ in range(30)))
    assert reads - before <= 2, reads - before


async def test_an_older_read_of_the_keys_never_replaces_a_newer_one() -> None:
    """The periodic read and a catch-up overlap: the one that started first
    and ends last must not put back a key set without the new key."""
    import asyncio

    text, record = new_key("late", Role.VIEWER, ["iris"])
    stored: dict[str, ApiKey] = {}
    slow_started, release = asyncio.Event(), asyncio.Event()

    async def load() -> list[ApiKey]:
        seen = list(stored.values())
        if not slow_started.is_set():
            slow_started.set()
            await release.wait()  # the periodic read, stuck on a slow engine
        return seen

    keys = KeyCache(load)
    slow = asyncio.create_task(keys.refresh())
    await slow_started.wait()
    stored[record.id] = record  # made after the slow read listed the keys
    await keys.knows(text)
    assert record.id in keys.keys
    release.set()
    await slow
    assert record.id in keys.keys


def test_the_key_feed_holds_digests_and_waits_for_a_change(world) -> None:
    client, _, stored, text = world
    first = client.get("/keys")
    assert first.status_code == 200
    (record,) = first.json()["keys"]
    key_id, secret = parse_key(text) or ("", "")
    assert record == {"id": key_id, "name": "ci", "role": "viewer",
                      "models": ["iris"], "sha256": stored[key_id].digest}
    assert secret not in first.text  # no secret, only its digest
    tag = first.headers["etag"]
    started = time.monotonic()
    unchanged = client.get(f"/keys?known={tag}&wait=0.3")
    assert unchanged.status_code == 304 and time.monotonic() - started >= 0.3
    # A key made since: asking with its id reads the keys again at once.
    _, new_record = new_key("fresh", Role.ADMIN, ["*"])
    stored[new_record.id] = new_record
    fresh = client.get(f"/keys?known={tag}&id={new_record.id}")
    assert fresh.status_code == 200 and fresh.headers["etag"] != tag
    assert {k["name"] for k in fresh.json()["keys"]} == {"ci", "fresh"}
    assert client.get("/keys?wait=soon").status_code == 400


async def test_a_waiting_feed_reader_hears_of_a_revocation_at_once() -> None:
    import asyncio

    import httpx

    _, record = new_key("ci", Role.VIEWER, ["iris"])
    stored = {record.id: record}

    async def load() -> list[ApiKey]:
        return list(stored.values())

    keys = KeyCache(load)
    await keys.refresh()
    transport = httpx.ASGITransport(app=create_app(keys, None))
    async with httpx.AsyncClient(transport=transport, base_url="http://auth") as http:
        tag = (await http.get("/keys")).headers["etag"]
        waiting = asyncio.create_task(http.get(f"/keys?known={tag}&wait=10"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        stored.clear()  # revoked; the cache's next read sees it
        started = time.monotonic()
        await keys.refresh()
        answer = await waiting
    assert time.monotonic() - started < 5  # not the 10 s it was allowed to wait
    assert answer.status_code == 200 and answer.json() == {"keys": []}
