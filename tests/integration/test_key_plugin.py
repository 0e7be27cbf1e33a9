"""The gateway's API key plugin (gateway/plugins, Go that Traefik interprets)
in the real Traefik binary, against the real auth service's key feed served
here: it must decide as the auth service's /verify does for `auth: apikey`
(tests/integration/test_auth_service.py), let in the version's probe by
its token's digest, take a key made a moment ago, and drop a revoked one as
soon as the feed has read the removal. The whole stack runs it in
tests/e2e/test_auth.py."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from aiart.auth.access import ApiKey, Role, new_key, probe_token
from aiart.auth.keystore import KeyCache
from aiart.auth.service import create_app

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "gateway" / "plugins"
BINARY = os.environ.get("AIART_TRAEFIK_BIN", "")
PROBE_KEY = b"probe-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server(uvicorn.Server):
    """uvicorn in a thread of this process (the app's state stays reachable)."""

    def install_signal_handlers(self) -> None:
        pass


def serve(app: Any, port: int) -> tuple[Server, threading.Thread]:
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    return server, thread


async def backend(scope: Any, receive: Any, send: Any) -> None:
    """The model: answers with the subject the gateway handed it."""
    if scope["type"] != "http":
        return
    headers = dict(scope["headers"])
    body = json.dumps({"subject": headers.get(b"x-aiart-subject", b"").decode()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


def with_refresher(app: Any, keys: KeyCache) -> Any:
    """The app, and the key cache's periodic refresh on its loop (as the
    auth service runs it, auth/serving.py)."""
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return
        refresher = None
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                refresher = asyncio.create_task(keys.run())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if refresher is not None:
                    refresher.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return
    return wrapped


@dataclass
class Gateway:
    url: str
    stored: dict[str, ApiKey]  # the swarm's key records, as the feed reads them

    def post(self, path: str = "/v2/models/iris/infer", **headers: str) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", headers=headers, timeout=5)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """One Traefik for the module (it takes seconds to interpret the plugin);
    each test uses keys of its own."""
    tmp_path = tmp_path_factory.mktemp("gateway")
    if not BINARY or not os.access(BINARY, os.X_OK):
        pytest.fail("AIART_TRAEFIK_BIN: the Traefik binary (hack/test.sh sets it, from "
                    "hack/images.sh fetch_traefik_bin)")
    stored: dict[str, ApiKey] = {}

    async def load() -> list[ApiKey]:
        return list(stored.values())

    keys = KeyCache(load, every=0.2)
    feed_port, backend_port, gateway_port = free_port(), free_port(), free_port()
    servers = [serve(with_refresher(create_app(keys, None), keys), feed_port),
               serve(backend, backend_port)]
    digest = hashlib.sha256(probe_token(PROBE_KEY, "iris", "2").encode()).hexdigest()
    shutil.copytree(PLUGINS, tmp_path / "plugins-local")
    dynamic = tmp_path / "dynamic.yml"
    dynamic.write_text(f"""
http:
  routers:
    iris:
      rule: PathPrefix(`/v2`)
      service: model
      entryPoints: [web]
      middlewares: [iris-auth]
  middlewares:
    iris-auth:
      plugin:
        aiartkeys:
          model: iris
          feed: http://127.0.0.1:{feed_port}/keys
          probeDigest: {digest}
  services:
    model:
      loadBalancer:
        servers:
          - url: http://127.0.0.1:{backend_port}
""")
    log_path = tmp_path / "traefik.log"
    with log_path.open("w") as log:
        traefik = subprocess.Popen(
            [BINARY, f"--entrypoints.web.address=127.0.0.1:{gateway_port}",
             f"--providers.file.filename={dynamic}",
             "--experimental.localPlugins.aiartkeys.moduleName=aiart.local/keyauth"],
            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{gateway_port}"
    try:
        deadline = time.monotonic() + 20
        while True:  # the route is up once health, open to anyone, passes
            try:
                if httpx.get(f"{url}/v2/health/live", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert traefik.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, log_path.read_text()[-3000:]
            time.sleep(0.1)
        yield Gateway(url, stored)
    finally:
        traefik.terminate()
        traefik.wait(10)
        for server, thread in servers:
            server.should_exit = True
            thread.join(5)


def test_the_plugin_decides_as_the_auth_service(gateway: Gateway) -> None:
    text, record = new_key("line-3", Role.VIEWER, ["iris"])
    other_text, other = new_key("wine-only", Role.VIEWER, ["wine"])
    everything_text, everything = new_key("ops", Role.ADMIN, ["*"])
    for r in (record, other, everything):
        gateway.stored[r.id] = r
    missing = gateway.post()
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == 'ApiKey realm="aiart"'
    assert "needs an aiart API key" in missing.json()["error"]
    assert gateway.post(**{"X-API-Key": "aiart_nope"}).json()["error"] == (
        "the API key is malformed")
    # A token that is not an aiart key is no key.
    assert gateway.post(Authorization="Bearer eyJhbGciOi.x.y").status_code == 401
    ok = gateway.post(**{"X-API-Key": text, "X-Aiart-Subject": "apikey:forged"})
    assert ok.status_code == 200 and ok.json()["subject"] == "apikey:line-3"
    assert gateway.post(Authorization=f"Bearer {everything_text}").json()["subject"] == (
        "apikey:ops")
    refused = gateway.post(**{"X-API-Key": other_text})
    assert refused.status_code == 403
    assert refused.json()["error"] == "the API key 'wine-only' does not cover model 'iris'"
    key_id = text.split("_")[1]
    forged = f"aiart_{key_id}_{'A' * 43}"
    assert gateway.post(**{"X-API-Key": forged}).json()["error"] == (
        "the API key is unknown or revoked")
    # Health and readiness are open to GET only.
    assert httpx.get(f"{gateway.url}/v2/models/iris/ready").status_code == 200
    assert gateway.post("/v2/models/iris/ready").status_code == 401


def test_the_versions_probe_token_opens_this_version_only(gateway: Gateway) -> None:
    probe = gateway.post(**{"X-Aiart-Probe": "x, " + probe_token(PROBE_KEY, "iris", "2")})
    assert probe.status_code == 200 and probe.json()["subject"] == "aiart-probe"
    for token in (probe_token(PROBE_KEY, "iris", "1"), probe_token(b"other", "iris", "2"),
                  hashlib.sha256(probe_token(PROBE_KEY, "iris", "2").encode()).hexdigest()):
        assert gateway.post(**{"X-Aiart-Probe": token}).status_code == 401, token


def test_a_new_key_works_at_once_and_a_revoked_one_stops(gateway: Gateway) -> None:
    # A key nobody made, tried just before: the plugin and the feed have
    # each read the keys a moment ago, and must read them again for the
    # new key rather than refuse it on what they read then.
    unknown, _ = new_key("never-made", Role.VIEWER, ["iris"])
    assert gateway.post(**{"X-API-Key": unknown}).status_code == 401
    text, record = new_key("fresh", Role.DEPLOYER, ["iris"])
    gateway.stored[record.id] = record
    # Its first call: the plugin asks the feed for it, the feed reads again.
    assert gateway.post(**{"X-API-Key": text}).status_code == 200
    del gateway.stored[record.id]
    revoked_at = time.monotonic()
    while gateway.post(**{"X-API-Key": text}).status_code == 200:
        # The feed answers the plugin's waiting poll once it reads the
        # removal (0.2 s here); a generous bound, for a loaded machine.
        assert time.monotonic() - revoked_at < 5, "the revoked key still works"
        time.sleep(0.02)
    print(f"revoked key refused after {time.monotonic() - revoked_at:.2f} s")
    assert gateway.post(**{"X-API-Key": text}).status_code == 401
