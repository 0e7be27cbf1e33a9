"""``aiart-store-gateway``: the object store as models reach it.

Models never hold the store's keys and are not on the store's network: a
model that asks for the store gets a key pair of its own and this gateway's
address. Each request is verified (``store_policy.verify``), checked against
the model's scope (``store_policy.authorize``), signed again with the
store's keys and passed on; bodies and answers stream through unread, but
for a multi-object delete, whose keys are read from its body and checked.
The payload hash the client signed is passed on as it is, so the store
still checks the body against it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from xml.sax.saxutils import escape

import aiohttp
from aiart_runtime import logs
from aiohttp import web
from multidict import CIMultiDictProxy
from yarl import URL

from aiart.core.settings import LogSettings, StoreGatewaySettings, StoreSettings
from aiart.store.policy import (
    MAX_DELETE_BODY,
    Denied,
    access_key_for,
    authorize,
    delete_keys,
    model_of,
    secret_for,
    sign,
    split_path,
    verify,
)

log = logging.getLogger("aiart.store_gateway")
# Not passed on: hop-by-hop headers, the client's signature and host (signed
# again for the store), and Expect (the gateway answers 100-continue itself).
DROPPED = frozenset({"authorization", "host", "connection", "keep-alive", "proxy-authorization",
                     "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
                     "expect", "x-amz-security-token", "user-agent"})
ANSWER_DROPPED = frozenset({"connection", "keep-alive", "transfer-encoding", "server", "date"})
TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=300)
# Read in chunks of this size from the client while the store takes them.
CHUNK = 256 * 1024


def error(status: int, code: str, message: str, resource: str) -> web.Response:
    """An S3 error document: S3 clients show its code and message."""
    body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(code)}</Code>'
            f"<Message>{escape(message)}</Message><Resource>{escape(resource)}</Resource>"
            "</Error>")
    return web.Response(status=status, text=body, content_type="application/xml")


def multi(headers: CIMultiDictProxy[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in headers.items():
        out.setdefault(name.lower(), []).append(value)
    return out


class StoreGateway:
    def __init__(self, store: StoreSettings, gateway_key: bytes,
                 session: aiohttp.ClientSession) -> None:
        self.store = store
        self.gateway_key = gateway_key
        self.session = session
        self.upstream = f"{'https' if store.secure else 'http'}://{store.endpoint}"

    def secret_of(self, access_key: str) -> str | None:
        return secret_for(self.gateway_key, access_key) if model_of(access_key) else None

    def app(self) -> web.Application:
        # No body limit here: bodies stream to the store, which has its own.
        app = web.Application(client_max_size=0)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw_path, _, raw_query = request.raw_path.partition("?")
        headers = multi(request.headers)
        try:
            signed = verify(method=request.method, raw_path=raw_path, raw_query=raw_query,
                            headers=headers, secret_of=self.secret_of, now=datetime.now(UTC))
            model = model_of(signed.access_key)
            assert model is not None  # secret_of knew the key
            authorize(model=model, method=request.method, raw_path=raw_path,
                      raw_query=raw_query, headers=headers)
            body: bytes | None = None
            if request.method == "POST" and not split_path(raw_path)[1]:
                body = await self.small_body(request)
                delete_keys(body)
        except Denied as exc:
            log.warning("refused %s %s: %s", request.method, request.raw_path, exc.message)
            status = 405 if exc.code == "MethodNotAllowed" else (
                400 if exc.code in ("MalformedXML", "AuthorizationHeaderMalformed",
                                    "EntityTooLarge") else 403)
            return error(status, exc.code, f"aiart's store gateway: {exc.message}", raw_path)
        return await self.forward(request, raw_path, raw_query, headers, body, signed.region,
                                  access_key_for(model))

    @staticmethod
    async def small_body(request: web.Request) -> bytes:
        if (request.content_length or 0) > MAX_DELETE_BODY:
            raise Denied("EntityTooLarge", f"a delete request is at most {MAX_DELETE_BODY} bytes")
        body = await request.content.read(MAX_DELETE_BODY + 1)
        if len(body) > MAX_DELETE_BODY:
            raise Denied("EntityTooLarge", f"a delete request is at most {MAX_DELETE_BODY} bytes")
        return body

    async def forward(self, request: web.Request, raw_path: str, raw_query: str,
                      headers: dict[str, list[str]], body: bytes | None, region: str,
                      who: str) -> web.StreamResponse:
        outgoing = {name: values for name, values in headers.items() if name not in DROPPED}
        outgoing["host"] = [self.store.endpoint]
        sign(method=request.method, raw_path=raw_path, raw_query=raw_query, headers=outgoing,
             access_key=self.store.access_key, secret=self.store.secret_key, region=region,
             now=datetime.now(UTC))
        data: bytes | AsyncIterator[bytes] | None = body
        if body is None and request.can_read_body:
            data = request.content.iter_chunked(CHUNK)
        url = f"{self.upstream}{raw_path}" + (f"?{raw_query}" if raw_query else "")
        try:
            async with self.session.request(
                    request.method, URL(url, encoded=True),
                    headers=[(n, v) for n, values in outgoing.items() for v in values],
                    data=data, timeout=TIMEOUT, skip_auto_headers=("User-Agent",
                                                                   "Content-Type"),
                    allow_redirects=False) as upstream:
                answer = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name, value in upstream.headers.items():
                    if name.lower() not in ANSWER_DROPPED:
                        answer.headers.add(name, value)
                await answer.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await answer.write(chunk)
                await answer.write_eof()
                log.debug("%s %s for %s: %d", request.method, raw_path, who, upstream.status)
                return answer
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("the store did not answer %s %s: %s", request.method, raw_path, exc)
            return error(502, "ServiceUnavailable",
                         f"aiart's store gateway cannot reach the store: {exc}", raw_path)


def _read(path: str, what: str) -> bytes:
    try:
        value = Path(path).read_bytes().strip()
    except OSError as exc:
        raise SystemExit(f"{what}: {exc}") from None
    if len(value) < 16:
        raise SystemExit(f"{what}: the key in {path} is shorter than 16 bytes")
    return value


async def serve(port: int, store: StoreSettings, gateway_key: bytes) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector, auto_decompress=False) as session:
        runner = web.AppRunner(StoreGateway(store, gateway_key, session).app(),
                               access_log=None)
        await runner.setup()
        # Every address of the task: it serves the model network.
        site = web.TCPSite(runner, "0.0.0.0", port)
        await site.start()
        log.info("aiart's store gateway on :%d, for the store at %s", port, store.endpoint)
        await stop.wait()
        with contextlib.suppress(Exception):
            await runner.cleanup()


def main() -> None:
    logs.configure(LogSettings.from_env().level)
    store = StoreSettings.from_env()
    if not store.endpoint:
        raise SystemExit("AIART_S3_ENDPOINT: the store the gateway passes requests to")
    settings = StoreGatewaySettings.from_env()
    if not settings.key_file:
        raise SystemExit("AIART_STORE_GATEWAY_KEY_FILE: the file holding the gateway's key")
    gateway_key = _read(settings.key_file, "AIART_STORE_GATEWAY_KEY_FILE")
    asyncio.run(serve(settings.port, store, gateway_key))


if __name__ == "__main__":
    main()
