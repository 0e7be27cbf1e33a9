"""The API refuses an oversized upload while it streams, before reading it
all: a chunked body that never says its length is cut off at the limit.
The real API app over httpx's ASGI transport, which hands the body over
chunk by chunk as the server asks for it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from aiart.api.app import create_app
from aiart.auth.access import ApiKey, Role, new_key
from aiart.auth.keystore import KeyCache

from tests.fakes import FakeCluster, FakeStore

LIMIT = 1024 * 1024
CHUNK = 64 * 1024


async def test_a_chunked_upload_past_the_limit_is_cut_off_early() -> None:
    text, record = new_key("uploader", Role.DEPLOYER, ["iris"])

    async def load() -> list[ApiKey]:
        return [record]

    keys = KeyCache(load)
    await keys.refresh()
    cluster = FakeCluster()
    app = create_app(cluster, FakeStore(), keys, None, max_upload_bytes=LIMIT)
    sent = 0
    boundary = "aiartboundary"

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"artifact\"; "
               f"filename=\"model.pkl\"\r\n\r\n").encode()
        for _ in range(20 * LIMIT // CHUNK):  # 20 MiB, far past the limit
            sent += CHUNK
            yield b"x" * CHUNK

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://api") as client:
        answer = await client.post(
            "/api/v1/models", content=body(),
            headers={"X-API-Key": text,
                     "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert answer.status_code == 413, answer.text
    assert "larger than" in answer.json()["error"]
    assert sent < 2 * LIMIT, f"the API read {sent} bytes before refusing"
    assert not cluster.configs
