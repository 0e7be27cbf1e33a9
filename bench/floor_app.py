"""The floor of the HTTP stack: an ASGI app that reads the body and answers a
constant, served by the same uvicorn settings as aiart's runtime. What it
costs is what any Python model server on this stack pays before it parses a
byte, so the benchmark reports it next to the runtime's overhead."""

from __future__ import annotations

from typing import Any

BODY = b'{"outputs":[]}'


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
