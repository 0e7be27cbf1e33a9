"""``aiart-engine-proxy``: the Docker Engine API, narrowed, for the auth
service, the API, the gateway and Prometheus.

It holds the engine's socket and serves one Unix socket per client, each in
a volume only that client mounts (``stack.yml``), so a client is known by
the socket it came in on. Each request is checked by ``policy`` and
passed on unchanged, or refused with a 403 and a message the Docker clients
show. Answers stream back as the engine sends them (logs).

A hand-written proxy rather than a general one (HAProxy's socket proxies
allow or refuse whole sections of the API): the API may create configs, but
only those a deployment is, and remove them, but not key records; that takes
the request's body and the config's labels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from pathlib import Path

import aiohttp
from aiart_runtime import logs
from aiohttp import web

from aiart.core.settings import EngineProxySettings, LogSettings
from aiart.engine.policy import (
    MAX_BODY,
    Client,
    Verdict,
    command_update,
    decide,
    engine_path,
    may_read_logs,
    may_remove,
    rewritten,
    vanished,
)

log = logging.getLogger("aiart.engine_proxy")
# Response headers the Docker clients read; hop-by-hop ones are aiohttp's.
PASSED_HEADERS = ("Content-Type", "Api-Version", "Docker-Experimental", "Ostype", "Server")
TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=5)


def refuse(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


class EngineProxy:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    def app(self, client: Client) -> web.Application:
        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.handle(client, request)

        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", handle)
        return app

    async def handle(self, client: Client, request: web.Request) -> web.StreamResponse:
        raw = request.raw_path
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return refuse(413, f"a request to the engine proxy is at most {MAX_BODY} bytes")
        verdict = decide(client, request.method, raw, body)
        if verdict.allowed and verdict.update and verdict.config is not None:
            verdict, body = await self.update_body(verdict.config, body)
        elif verdict.allowed and verdict.config is not None:
            verdict = await self.judged("configs", verdict.config, may_remove)
        elif verdict.allowed and verdict.service is not None:
            verdict = await self.judged("services", verdict.service, may_read_logs)
        if not verdict.allowed:
            log.warning("refused %s %s from the %s service: %s", request.method, raw,
                        client.value, verdict.reason)
            return refuse(403, f"aiart's engine proxy: {verdict.reason}")
        headers = {"Content-Type": request.headers["Content-Type"]} \
            if "Content-Type" in request.headers else {}
        target = verdict.path or raw
        if verdict.rewrite:
            return await self.rewritten(target, client)
        try:
            async with self.session.request(request.method, f"http://engine{target}",
                                            data=body or None, headers=headers,
                                            timeout=TIMEOUT) as upstream:
                answer = web.StreamResponse(status=upstream.status, reason=upstream.reason)
                for name in PASSED_HEADERS:
                    if name in upstream.headers:
                        answer.headers[name] = upstream.headers[name]
                if "Content-Type" not in upstream.headers:
                    # The engine sends none with an empty answer (a config's
                    # update); aiohttp would say octet-stream, which Docker
                    # clients refuse to read. Empty text reads as nothing.
                    answer.headers["Content-Type"] = "text/plain; charset=utf-8"
                await answer.prepare(request)
                async for chunk in upstream.content.iter_any():
                    await answer.write(chunk)
                await answer.write_eof()
                return answer
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            return refuse(502, f"aiart's engine proxy cannot reach the engine: {exc}")

    async def rewritten(self, raw: str, client: Client) -> web.Response:
        """The engine's answer to a read, as the policy rewrites it."""
        try:
            async with self.session.get(f"http://engine{raw}", timeout=TIMEOUT) as upstream:
                body = await upstream.json(content_type=None)
                path, status = engine_path(raw) or "", upstream.status
                if status == 200:
                    body = rewritten(path, body, client)
                elif vanished(path, status):
                    body, status = [], 200
                return web.json_response(body, status=status)
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return refuse(502, f"aiart's engine proxy cannot reach the engine: {exc}")

    async def update_body(self, config: str, body: bytes) -> tuple[Verdict, bytes]:
        """The config read whole, then what the policy lets an update send."""
        try:
            async with self.session.get(f"http://engine/configs/{config}",
                                        timeout=TIMEOUT) as answer:
                if answer.status == 404:
                    return Verdict(False, f"config {config} does not exist"), b""
                answer.raise_for_status()
                spec = (await answer.json()).get("Spec") or {}
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return Verdict(False, f"config {config} could not be read: {exc}"), b""
        return command_update(spec, body)

    async def judged(self, kind: str, name: str,
                     judge: Callable[[dict[str, str]], Verdict]) -> Verdict:
        """Read the object's labels from the engine, then ask the policy."""
        try:
            async with self.session.get(f"http://engine/{kind}/{name}",
                                        timeout=TIMEOUT) as answer:
                if answer.status == 404:
                    # Gone already: the engine's own 404 is the honest answer.
                    return Verdict(True)
                answer.raise_for_status()
                labels = (await answer.json()).get("Spec", {}).get("Labels") or {}
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return Verdict(False, f"the labels of {kind} {name} could not be read: {exc}")
        return judge(labels)


def sockets_from_env(value: str) -> dict[Client, Path]:
    """``auth=/run/...,api=/run/...`` -> the socket each client is served on."""
    sockets = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, _, path = item.partition("=")
        try:
            sockets[Client(name.strip())] = Path(path.strip())
        except ValueError:
            raise SystemExit(f"AIART_ENGINE_PROXY_SOCKETS: no client {name!r} "
                             f"(clients: {', '.join(c.value for c in Client)})") from None
    if not sockets:
        raise SystemExit("AIART_ENGINE_PROXY_SOCKETS names no socket (auth=PATH,api=PATH,...)")
    return sockets


async def serve(sockets: dict[Client, Path], engine: str, stop: asyncio.Event) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=engine)) as session:
        proxy = EngineProxy(session)
        runners = []
        try:
            for client, path in sockets.items():
                path.parent.mkdir(parents=True, exist_ok=True)
                # A socket left by an earlier task on this node: bind anew.
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                runner = web.AppRunner(proxy.app(client), access_log=None)
                await runner.setup()
                runners.append(runner)
                await web.UnixSite(runner, str(path)).start()
                path.chmod(0o660)
                log.info("serving the %s service on %s", client.value, path)
            await stop.wait()
        finally:
            for runner in runners:
                await runner.cleanup()


def main() -> None:
    logs.configure(LogSettings.from_env().level)
    settings = EngineProxySettings.from_env()
    sockets = sockets_from_env(settings.sockets)
    engine = settings.engine_socket

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(sockets, engine, stop)

    asyncio.run(run())


if __name__ == "__main__":
    main()
