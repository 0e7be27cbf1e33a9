"""The activator (aiart/activator/service.py) between real HTTP servers in
this process: a model server that starts answering only once woken, and an
operator whose wake endpoint may be away. Held requests are answered once
each, after one wake; a version that does not wake in time gives 503 with
Retry-After; an operator that comes back late still wakes it. The whole
stack runs it in tests/e2e/test_scaling.py."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import grpc
import pytest
from aiart.activator.service import Activator, GrpcHold, Target, connection_each, create_app
from aiart.core.traffic import ACTIVATE_HEADER
from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class World:
    activator_url: str
    model_port: int
    operator_port: int
    seen: list[str] = field(default_factory=list)  # request ids the model answered
    wakes: list[tuple[str, str]] = field(default_factory=list)  # (path, gateway token)
    ready: bool = False
    woken: bool = False
    # Where the version's name leads: nowhere, as for a task Docker's DNS
    # does not name yet, unless a test says otherwise.
    by_name: str = "http://nowhere.invalid:1"
    wake_delay: float = 0.3  # from the wake call to the model answering
    operator_up: bool = True
    runners: list[web.AppRunner] = field(default_factory=list)
    activator: Activator | None = None

    async def start_operator(self) -> None:
        app = web.Application()

        async def wake(request: web.Request) -> web.Response:
            self.wakes.append((request.path, request.headers.get("X-Aiart-Gateway", "")))
            if not self.woken:
                self.woken = True
                asyncio.get_running_loop().call_later(self.wake_delay, self.set_ready)
            # The task's address, as the swarm allocated it: the version's
            # name does not resolve here (Docker's DNS names a task late).
            return web.json_response({"replicas": 1, "addresses": ["127.0.0.1"]}, status=202)

        app.router.add_post("/wake/{model}/{version}", wake)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.operator_port).start()
        self.runners.append(runner)

    def set_ready(self) -> None:
        self.ready = True


async def serve(app: web.Application, port: int) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner


@pytest.fixture
async def world() -> AsyncIterator[World]:
    w = World(activator_url=f"http://127.0.0.1:{free_port()}", model_port=free_port(),
              operator_port=free_port())
    model = web.Application()

    async def ready(_: web.Request) -> web.Response:
        return web.json_response({"ready": w.ready}, status=200 if w.ready else 503)

    async def infer(request: web.Request) -> web.Response:
        body = await request.json()
        w.seen.append(body["id"])
        return web.json_response({"id": body["id"], "path": request.path,
                                  "gateway": request.headers.get("X-Aiart-Gateway"),
                                  "held": request.headers.get(ACTIVATE_HEADER)})

    model.router.add_get("/v2/health/ready", ready)
    model.router.add_post("/v2/models/iris/infer", infer)
    w.runners.append(await serve(model, w.model_port))
    session, passing = aiohttp.ClientSession(), connection_each()  # as serve() has them
    activator = Activator(session, f"http://127.0.0.1:{w.operator_port}",
                          address=lambda _: w.by_name, port=w.model_port, passing=passing)
    w.activator = activator
    port = int(w.activator_url.rsplit(":", 1)[1])
    w.runners.append(await serve(create_app(activator, 1 << 20), port))
    try:
        yield w
    finally:
        for runner in w.runners:
            await runner.cleanup()
        await session.close()
        await passing.close()


async def call(world: World, client: aiohttp.ClientSession, request_id: str,
               hold: int = 5) -> tuple[int, dict[str, str], dict[str, object]]:
    async with client.post(
            f"{world.activator_url}/v2/models/iris/infer", data=json.dumps({"id": request_id}),
            headers={ACTIVATE_HEADER: f"iris/1/{hold}", "X-Aiart-Gateway": "token-1",
                     "Content-Type": "application/json"}) as response:
        return response.status, dict(response.headers), await response.json()


async def test_held_requests_share_one_wake_and_are_answered_once_each(world: World) -> None:
    await world.start_operator()
    async with aiohttp.ClientSession() as client:
        answers = await asyncio.gather(*(call(world, client, f"r{i}") for i in range(12)))
    assert [status for status, _, _ in answers] == [200] * 12
    assert sorted(world.seen) == sorted(f"r{i}" for i in range(12))  # each once
    assert {body["id"] for _, _, body in answers} == {f"r{i}" for i in range(12)}
    # The model gets the gateway's token, and never the activator's own header.
    assert {(body["gateway"], body["held"]) for _, _, body in answers} == {("token-1", None)}
    # One wake for all twelve: the operator, once it named the task, was
    # asked again only once a second.
    assert world.wakes == [("/wake/iris/1", "token-1")]


async def test_a_version_that_does_not_wake_in_time_gets_503_with_retry_after(
        world: World) -> None:
    world.wake_delay = 60
    await world.start_operator()
    async with aiohttp.ClientSession() as client:
        status, headers, body = await call(world, client, "late", hold=1)
    assert status == 503 and headers["Retry-After"] == "5"
    assert "did not answer within 1 s" in str(body["error"])
    assert world.seen == []


async def test_an_operator_away_at_first_still_wakes_the_version(world: World) -> None:
    async with aiohttp.ClientSession() as client:
        pending = asyncio.ensure_future(call(world, client, "patient", hold=6))
        await asyncio.sleep(1.5)  # the activator has asked, and found nobody
        assert not pending.done()
        await world.start_operator()
        status, _, body = await pending
    assert status == 200 and body["id"] == "patient" and world.seen == ["patient"]
    assert world.wakes and world.wakes[0][0] == "/wake/iris/1"


async def test_a_request_the_gateway_did_not_hold_is_refused(world: World) -> None:
    async with aiohttp.ClientSession() as client:
        for header in ({}, {ACTIVATE_HEADER: "iris/1"}, {ACTIVATE_HEADER: "../x/1/5"}):
            async with client.post(f"{world.activator_url}/v2/models/iris/infer",
                                   headers=header) as response:
                assert response.status == 400
    assert world.seen == [] and world.wakes == []


def test_a_target_names_the_versions_service() -> None:
    assert Target("iris", "2", 30).base == "http://aiart-iris-2:8080"


async def test_a_version_already_up_needs_no_operator(world: World) -> None:
    """Up, but not yet in the gateway's routes (it reads the swarm every
    second): the activator finds it ready by its name at once and passes the
    request on without asking the operator, which is not even there."""
    world.ready = True
    world.by_name = f"http://127.0.0.1:{world.model_port}"
    async with aiohttp.ClientSession() as client:
        status, _, body = await call(world, client, "early")
    assert status == 200 and body["id"] == "early" and world.seen == ["early"]
    assert world.wakes == []


INFER = "/inference.GRPCInferenceService/ModelInfer"


class GrpcModel(grpc.GenericRpcHandler):
    """The model's gRPC port: answers ModelInfer with what it was sent."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []

    def service(self, details: grpc.HandlerCallDetails
                ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        metadata = dict(details.invocation_metadata or ())

        async def infer(request: bytes, _: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            self.seen.append({k: str(v) for k, v in metadata.items()})
            return b"answer:" + request

        return grpc.unary_unary_rpc_method_handler(infer) if details.method == INFER else None


async def test_a_grpc_call_is_held_and_passed_on_once(world: World) -> None:
    await world.start_operator()
    model, model_port, hold_port = GrpcModel(), free_port(), free_port()
    servers = [grpc.aio.server(handlers=[model]), grpc.aio.server(
        handlers=[GrpcHold(world.activator, port=model_port)])]  # type: ignore[arg-type]
    servers[0].add_insecure_port(f"127.0.0.1:{model_port}")
    servers[1].add_insecure_port(f"127.0.0.1:{hold_port}")
    for server in servers:
        await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{hold_port}") as channel:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(INFER)
            answer = await call(b"row", metadata=(
                ("x-aiart-activate", "iris/1/5"), ("x-aiart-gateway", "token-1"),
                ("aiart-model", "iris")))
            assert answer == b"answer:row"
            assert len(model.seen) == 1
            assert model.seen[0]["x-aiart-gateway"] == "token-1"
            assert "x-aiart-activate" not in model.seen[0]
            assert world.wakes == [("/wake/iris/1", "token-1")]
            # Without the gateway's header: refused, and nothing is woken.
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await call(b"row")
            assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert len(model.seen) == 1
    finally:
        for server in servers:
            await server.stop(0)


async def test_a_grpc_call_for_a_version_that_does_not_wake_is_unavailable(
        world: World) -> None:
    world.wake_delay = 60
    await world.start_operator()
    hold_port = free_port()
    server = grpc.aio.server(handlers=[GrpcHold(world.activator, port=free_port())])  # type: ignore[arg-type]
    server.add_insecure_port(f"127.0.0.1:{hold_port}")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{hold_port}") as channel:
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(INFER)
            with pytest.raises(grpc.aio.AioRpcError) as late:
                await call(b"row", metadata=(("x-aiart-activate", "iris/1/1"),))
            assert late.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "did not answer within 1 s" in (late.value.details() or "")
    finally:
        await server.stop(0)


async def test_a_task_gone_since_it_was_found_ready_is_woken_again(world: World) -> None:
    """Found ready a moment ago, then put back to sleep: the request finds
    nobody at that address (nothing sent), and the version is woken again
    for it rather than the caller getting an error."""
    await world.start_operator()
    assert world.activator is not None
    gone = f"http://127.0.0.1:{free_port()}"
    world.activator._ready[("iris", "1")] = (gone, asyncio.get_running_loop().time() + 60)
    async with aiohttp.ClientSession() as client:
        status, _, body = await call(world, client, "after")
    assert status == 200 and body["id"] == "after" and world.seen == ["after"]
    assert world.wakes and world.wakes[0][0] == "/wake/iris/1"


async def test_each_check_of_a_task_is_a_connection_of_its_own(world: World) -> None:
    """The swarm takes a task out of its version's name before it stops it:
    a kept connection from an earlier check would still reach it, find the
    name ready when it leads nowhere, and the held request would fail on the
    name (seen end to end: three such tries in ten milliseconds, then 503)."""
    peers: list[object] = []
    app = web.Application()

    async def ready(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        return web.json_response({"ready": True})

    app.router.add_get("/v2/health/ready", ready)
    port = free_port()
    world.runners.append(await serve(app, port))
    assert world.activator is not None
    base = f"http://127.0.0.1:{port}"
    for _ in range(3):
        assert await world.activator._says_ready(base) == base
    assert len(peers) == 3 and len(set(map(str, peers))) == 3, peers
