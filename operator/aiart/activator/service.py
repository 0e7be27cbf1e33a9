"""``aiart-activator``: where the gateway sends requests for a scalable
version that has no task it knows of (core/traffic.py's wake routes).

Each request is held, not refused: the activator asks the operator to wake
the version (``POST /wake/<model>/<version>`` on its traffic port), waits
until a task of the version answers its readiness check, and then passes
the request to that task, once, and its answer back. Requests that wait
for the same version share one wake. If no task answers within the
version's activation timeout, the caller gets 503 with ``Retry-After``.

It runs as several replicas beside the gateway and keeps no state worth
keeping. A request that comes while the version is up but not yet in the
gateway's routes (Traefik reads the swarm every second) finds it ready at
the first check and is passed on without the operator; only a version at
zero needs the operator, and while the operator is away the activator asks
again every second until it answers or the request's time is up.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp
import grpc
from aiart_runtime import logs
from aiohttp import web

from aiart.core.render import GATEWAY_HEADER, GRPC_PORT, SERVER_PORT, service_name
from aiart.core.settings import ActivatorSettings, LogSettings
from aiart.core.traffic import ACTIVATE_HEADER

log = logging.getLogger("aiart.activator")
# Headers of one connection, not of the request (RFC 9110, 7.6.1).
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "host", "content-length"})
TARGET = re.compile(r"^([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)/([a-z0-9](?:[a-z0-9-]*[a-z0-9])?)"
                    r"/(\d{1,4})$")
# How often a waking version's readiness is checked, and the operator asked again.
CHECK_SECONDS = 0.05
ASK_AGAIN_SECONDS = 1.0
# A version found ready is trusted this long without another check (the
# gateway takes up its task within about a second).
READY_FOR_SECONDS = 2.0
RETRY_AFTER_SECONDS = 5
# How long one readiness check waits for its answer. A task that is not
# there refuses at once; one that is there, on a busy node, may take more
# than the half second this once was to say it is ready (a CI machine at a
# load of dozens woke a model in 60 s, its callers' whole wait).
READY_CHECK_SECONDS = 2.0
ADDRESS = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")  # the model network's (IPv4)


@dataclass(frozen=True, slots=True)
class Target:
    model: str
    version: str
    hold_seconds: int

    @property
    def base(self) -> str:
        return f"http://{service_name(self.model, self.version)}:{SERVER_PORT}"


def parse_target(value: str) -> Target | None:
    match = TARGET.match(value)
    if match is None:
        return None
    return Target(match.group(1), match.group(2), int(match.group(3)))


class Activator:
    def __init__(self, session: aiohttp.ClientSession, operator_url: str,
                 address: Callable[[Target], str] = lambda target: target.base,
                 port: int = SERVER_PORT,
                 passing: aiohttp.ClientSession | None = None) -> None:
        self.session = session  # the operator's wake calls
        # Checks of a version's tasks, and held requests: a connection each
        # (connection_each). A kept one would reach a task the swarm has
        # taken out of the version's name (before it stops it): a check would
        # find the name ready when it leads nowhere, and a request would fail
        # after it was written to a task that stopped since.
        self.passing = passing or session
        self.operator_url = operator_url.rstrip("/")
        self.address = address  # where a version's tasks answer (its service's name)
        self.port = port  # a task's server port, at the addresses the operator gives
        self._wakes: dict[tuple[str, str], asyncio.Task[str | None]] = {}
        self._until: dict[tuple[str, str], float] = {}  # the last waiting request's deadline
        # A version found ready: where, and until when that is trusted
        # without another check (the gateway takes its task up within a second).
        self._ready: dict[tuple[str, str], tuple[str, float]] = {}
        # Its tasks' addresses, as the operator gave them.
        self._addresses: dict[tuple[str, str], tuple[str, ...]] = {}
        self._touched: dict[tuple[str, str], float] = {}
        self._pending: set[asyncio.Future[None]] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        target = parse_target(request.headers.get(ACTIVATE_HEADER, ""))
        if target is None:
            return web.json_response(
                {"error": "not a request the gateway held for a model"}, status=400)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + target.hold_seconds
        body = await request.read()
        token = request.headers.get(GATEWAY_HEADER, "")
        base = await self.awake(target, token, deadline)
        if base is not None:
            self.touch(target, token)
        if base is None:
            log.warning("%s version %s did not wake within %d s", target.model,
                        target.version, target.hold_seconds)
            return web.json_response(
                {"error": f"model {target.model} version {target.version} is starting and did "
                          f"not answer within {target.hold_seconds} s; try again"},
                status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        return await self.forward(request, target, base, body, token=token, deadline=deadline)

    async def awake(self, target: Target, token: str, deadline: float) -> str | None:
        """Where the version answers, once it does before ``deadline``
        (waking it if need be); None if it does not."""
        key = (target.model, target.version)
        loop = asyncio.get_running_loop()
        known = self._ready.get(key)
        if known is not None and known[1] > loop.time():
            return known[0]
        self._until[key] = max(self._until.get(key, 0.0), deadline)
        wake = self._wakes.get(key)
        if wake is None or wake.done():
            wake = self._wakes[key] = asyncio.create_task(self._wake(target, token))
        try:
            return await asyncio.wait_for(asyncio.shield(wake), max(deadline - loop.time(), 0))
        except TimeoutError:
            return None

    async def _wake(self, target: Target, token: str) -> str | None:
        """Check, ask, check again: until the version answers or no request
        waits for it any more. The operator is asked often until it names the
        version's tasks, then once a second (it may be away, or restarting)."""
        key = (target.model, target.version)
        loop = asyncio.get_running_loop()
        asked = float("-inf")
        started = loop.time()
        # Addresses from an earlier wake are of tasks gone since: a check
        # there waits out its timeout for nobody.
        self._addresses.pop(key, None)
        while loop.time() < self._until.get(key, 0.0):
            base = await self._answering(target)
            if base is not None:
                self._ready[key] = (base, loop.time() + READY_FOR_SECONDS)
                if asked > float("-inf"):
                    log.info("%s version %s woke in %.2f s", target.model, target.version,
                             loop.time() - started)
                return base
            again = ASK_AGAIN_SECONDS if self._addresses.get(key) else CHECK_SECONDS * 5
            if loop.time() - asked >= again:
                asked = self._touched[key] = loop.time()
                await self._ask(target, token)
            await asyncio.sleep(CHECK_SECONDS)
        return None

    async def _answering(self, target: Target) -> str | None:
        """One of the version's addresses (or its name) whose server says it
        is ready, all checked at once."""
        key = (target.model, target.version)
        bases = [f"http://{address}:{self.port}" for address in self._addresses.get(key, ())]
        checks = [asyncio.ensure_future(self._says_ready(base))
                  for base in [*bases, self.address(target)]]
        try:
            for check in asyncio.as_completed(checks):
                base = await check
                if base is not None:
                    return base
            return None
        finally:
            for check in checks:
                check.cancel()

    async def _says_ready(self, base: str) -> str | None:
        try:
            async with self.passing.get(f"{base}/v2/health/ready",
                                        timeout=aiohttp.ClientTimeout(
                                            total=READY_CHECK_SECONDS)) as answer:
                return base if answer.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None  # no task yet (no name, no address), or one still starting

    def touch(self, target: Target, token: str) -> None:
        """Tell the operator, at most once a second, that requests for the
        version pass here: they are not in the gateway's figures for the
        version, and it must not be put to sleep under them."""
        key = (target.model, target.version)
        now = asyncio.get_running_loop().time()
        if now - self._touched.get(key, float("-inf")) >= ASK_AGAIN_SECONDS:
            self._touched[key] = now
            task = asyncio.ensure_future(self._ask(target, token))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def _ask(self, target: Target, token: str) -> None:
        url = f"{self.operator_url}/wake/{target.model}/{target.version}"
        try:
            async with self.session.post(url, headers={GATEWAY_HEADER: token},
                                         timeout=aiohttp.ClientTimeout(total=2)) as response:
                if response.status >= 400:
                    log.warning("the operator will not wake %s version %s: %s %s",
                                target.model, target.version, response.status,
                                (await response.text())[:200])
                    return
                answer = await response.json()
                addresses = answer.get("addresses") if isinstance(answer, dict) else None
                if isinstance(addresses, list):
                    self._addresses[(target.model, target.version)] = tuple(
                        a for a in addresses if isinstance(a, str) and ADDRESS.match(a))
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning("cannot reach the operator to wake %s version %s: %s; asking again",
                        target.model, target.version, exc)

    async def forward(self, request: web.Request, target: Target, base: str, body: bytes,
                      *, token: str, deadline: float) -> web.StreamResponse:
        """The request to one task of the version, once. It is sent again only
        when no connection could be made (nothing was sent): the task may
        have gone (the version put back to sleep a moment ago), so the
        version is woken again if need be, within the request's time. A
        connection of its own each time: a pooled one to a task that has
        stopped since would fail after the request was written."""
        key = (target.model, target.version)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() != ACTIVATE_HEADER.lower()}
        for _ in range(3):
            try:
                async with self.passing.request(
                        request.method, f"{base}{request.raw_path}", headers=headers,
                        data=body, allow_redirects=False,
                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=2)) as answer:
                    payload = await answer.read()
                    out = {k: v for k, v in answer.headers.items()
                           if k.lower() not in HOP_BY_HOP}
                    return web.Response(status=answer.status, headers=out, body=payload)
            except aiohttp.ClientConnectorError as exc:
                log.info("%s version %s: no connection to %s (%s); waking it again",
                         target.model, target.version, base, exc)
                self._ready.pop(key, None)
                again = await self.awake(target, token, deadline)
                if again is None:
                    break
                base = again
            except aiohttp.ClientError as exc:
                # Sent, and the task went away before its answer: not sent
                # again (it may have been answered), and said so.
                self._ready.pop(key, None)
                return web.json_response(
                    {"error": f"model {target.model} version {target.version} stopped while "
                              f"answering ({type(exc).__name__}); the request may not have "
                              "been carried out"}, status=502)
        return web.json_response(
            {"error": f"model {target.model} version {target.version} cannot be reached; "
                      "try again"}, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class GrpcHold(grpc.GenericRpcHandler):
    """The same for gRPC calls (the Open Inference Protocol's, all unary):
    held while the version wakes, then passed to the task's gRPC port as
    they came, bytes and metadata, once; a version that does not wake in
    time gives UNAVAILABLE, as a 503 does over HTTP."""

    def __init__(self, activator: Activator, port: int = GRPC_PORT) -> None:
        self.activator = activator
        self.port = port  # a task's gRPC port

    def service(self, details: grpc.HandlerCallDetails
                ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        method = details.method
        metadata = [(k, v) for k, v in (details.invocation_metadata or ())
                    if isinstance(v, str)]

        async def hold(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
                       ) -> bytes:
            found = dict(metadata)
            target = parse_target(found.get(ACTIVATE_HEADER.lower(), ""))
            if target is None:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                    "not a request the gateway held for a model")
                raise AssertionError("unreachable")  # abort raises
            loop = asyncio.get_running_loop()
            base = await self.activator.awake(target, found.get(GATEWAY_HEADER.lower(), ""),
                                              loop.time() + target.hold_seconds)
            if base is None:
                await context.abort(grpc.StatusCode.UNAVAILABLE, (
                    f"model {target.model} version {target.version} is starting and did not "
                    f"answer within {target.hold_seconds} s; try again"))
                raise AssertionError("unreachable")
            host = urlsplit(base).hostname
            passed = [(k, v) for k, v in metadata if k != ACTIVATE_HEADER.lower()
                      and k not in ("user-agent", "te", "content-type", "grpc-accept-encoding")]
            async with grpc.aio.insecure_channel(f"{host}:{self.port}") as channel:
                call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                    method)
                try:
                    answer: bytes = await call(request, metadata=passed)
                except grpc.aio.AioRpcError as exc:
                    await context.abort(exc.code(), exc.details() or "")
                    raise AssertionError("unreachable") from exc
            return answer

        return grpc.unary_unary_rpc_method_handler(hold)


def connection_each() -> aiohttp.ClientSession:
    """Where the activator checks tasks and passes requests on: no DNS cache
    and no kept connection (Activator.passing), bodies as they are (no
    decompression on the way)."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(
        use_dns_cache=False, force_close=True), auto_decompress=False)


def create_app(activator: Activator, max_body_bytes: int) -> web.Application:
    app = web.Application(client_max_size=max_body_bytes)

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app.router.add_get("/health", health)
    app.router.add_route("*", "/{tail:.*}", activator.handle)
    return app


async def serve(settings: ActivatorSettings) -> None:
    # No DNS cache: a version's tasks come and go, and Docker's DNS knows them.
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(use_dns_cache=False))
    passing = connection_each()
    activator = Activator(session, settings.operator_url, passing=passing)
    runner = web.AppRunner(create_app(activator, settings.max_body_bytes), access_log=None)
    rpc = grpc.aio.server(handlers=[GrpcHold(activator)], options=[
        ("grpc.max_receive_message_length", settings.max_body_bytes),
        ("grpc.max_send_message_length", settings.max_body_bytes)])
    rpc.add_insecure_port(f"0.0.0.0:{settings.grpc_port}")
    try:
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", settings.port).start()
        await rpc.start()
        log.info("aiart activator on port %d (HTTP) and %d (gRPC)", settings.port,
                 settings.grpc_port)
        await asyncio.Event().wait()
    finally:
        await rpc.stop(grace=2)
        await runner.cleanup()
        await session.close()
        await passing.close()


def main() -> None:
    logs.configure(LogSettings.from_env().level)
    asyncio.run(serve(ActivatorSettings.from_env()))


if __name__ == "__main__":
    main()
