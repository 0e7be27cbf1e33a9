"""The HTTP server: Open Inference Protocol, /predict and /metrics.

One server for every runtime: a runtime is an object with ``load()``,
metadata and ``predict()``; ``dataplane.py`` makes the answers, this module
only carries them over HTTP.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .dataplane import BINARY_HEADER, JSON, Answer, DataPlane, dumps, failure
from .gateway_only import HEADER as GATEWAY_HEADER
from .gateway_only import GatewayOnly
from .metrics import outcome_of
from .model import ServedModel
from .payloads import PayloadLog

MAX_BODY_BYTES = 16 * 1024 * 1024
BINARY_KEY = BINARY_HEADER.lower().encode()
# A caller's pin of one version on the model's unversioned address (the
# operator's routes send it to that version: operator/aiart/core/render.py).
# A server asked for another version says so, rather than answering in that
# version's name: that is where a pin of a version the model lacks lands.
VERSION_KEY = b"x-aiart-version"
UNPINNED_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/metrics"})
# Asked by the engine's health check and Prometheus, not by callers: not a
# sign that the gateway still sends requests here (DataPlane.called).
UNCOUNTED_PATHS = ("/v2/health/", "/metrics")
# The headers of a JSON answer, encoded once: most answers have them.
JSON_HEADERS = ((b"content-type", b"application/json"),)
# ASGI's receive and send.
Receive = Any
Send = Any


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    pass


async def read_body(receive: Receive, declared: bytes | str | None, limit: int) -> bytes:
    """A request's body, refused (``BodyTooLarge``) as soon as it is known to
    pass ``limit`` bytes: by its Content-Length, or while it arrives. The one
    reader of bodies, for the router and the fast path alike."""
    length = declared.decode("latin-1") if isinstance(declared, bytes) else declared
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):
        # The common case: the whole body in one message.
        body: bytes = message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge
        return body
    chunks: list[bytes] = []
    size = 0
    while True:
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
        message = await receive()


def respond(answer: Answer) -> Response:
    status, body, headers = answer
    headers = dict(headers)
    media = headers.pop("content-type")
    return Response(body, status_code=status, media_type=media, headers=headers)


def too_large(limit: int) -> Answer:
    return failure(413, f"request body is larger than {limit} bytes")


def create_app(
    model: ServedModel, *, max_body_bytes: int = MAX_BODY_BYTES,
    gate: GatewayOnly | None = None, payloads: PayloadLog | None = None,
) -> ModelServerApp:
    plane = DataPlane(model, payloads)

    def json(content: Any) -> Response:
        return Response(dumps(content), media_type="application/json")

    async def live(_: Request) -> Response:
        return json({"live": True})

    async def ready(_: Request) -> Response:
        # The protocol's answer: 200 for ready, a 4xx for not (as Triton's 400).
        return Response(dumps({"ready": plane.ready}), status_code=200 if plane.ready else 400,
                        media_type="application/json")

    async def server_metadata(_: Request) -> Response:
        return json(plane.server_metadata())

    def unknown(request: Request) -> Answer | None:
        return plane.unknown(request.path_params["model"], request.path_params.get("version"))

    async def model_metadata(request: Request) -> Response:
        if (bad := unknown(request)) is not None:
            return respond(bad)
        return json(plane.model_metadata())

    async def model_ready(request: Request) -> Response:
        if (bad := unknown(request)) is not None:
            return respond(bad)
        return json({"name": plane.settings.name, "ready": model.ready})

    async def infer(request: Request) -> Response:
        if (bad := unknown(request)) is not None:
            return respond(bad)
        plane.arrive()
        try:
            raw = await read_body(request.receive, request.headers.get("content-length"),
                                  max_body_bytes)
        except BodyTooLarge:
            plane.depart()
            return respond(too_large(max_body_bytes))
        except ClientGone:
            plane.depart()
            return Response(status_code=400)  # nobody is listening any more
        return respond(await plane.infer(raw, request.headers.get(BINARY_HEADER)))

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        try:
            raw = await read_body(request.receive, request.headers.get("content-length"),
                                  max_body_bytes)
        except BodyTooLarge:
            answer = too_large(max_body_bytes)
            plane.metrics.observe("predict", outcome_of(answer[0]),
                                  time.perf_counter() - started, 0, len(answer[1]))
            return respond(answer)
        except ClientGone:
            return Response(status_code=400)
        return respond(plane.predict(raw, started))

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(plane.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return respond(failure(exc.status_code, str(exc.detail)))

    model_paths = ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
    # The router tries routes in order: the hot paths come first.
    routes = [Route(f"{base}/infer", infer, methods=["POST"]) for base in model_paths]
    routes += [
        Route("/predict", predict, methods=["POST"]),
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route("/metrics", prometheus),
    ]
    for base in model_paths:
        routes += [Route(base, model_metadata), Route(f"{base}/ready", model_ready)]
    router = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    router.state.metrics = plane.metrics
    settings = plane.settings
    fast_paths = {f"/v2/models/{settings.name}/infer",
                  f"/v2/models/{settings.name}/versions/{settings.version}/infer"}
    return ModelServerApp(router, fast_paths, plane, max_body_bytes, gate)


class ModelServerApp:
    """The ASGI app: inference requests for this model take a direct path
    (no router, no request objects: a measurable part of a small model's
    latency); everything else goes through Starlette's router."""

    def __init__(self, router: Starlette, fast_paths: set[str], plane: DataPlane,
                 max_body_bytes: int, gate: GatewayOnly | None = None) -> None:
        self.router = router
        self.state = router.state
        self.fast_paths = fast_paths
        self.plane = plane
        self.max_body_bytes = max_body_bytes
        self.gate = gate

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.router(scope, receive, send)
            return
        if not scope["path"].startswith(UNCOUNTED_PATHS):
            self.plane.called()
        headers = dict(scope["headers"])
        if self.gate is not None and not self.gate.allows(
                (scope.get("client") or ("", 0))[0], scope["path"], headers.get(GATEWAY_HEADER)):
            await self._send(send, failure(403, "only aiart's gateway may call this model"))
            return
        pinned = headers.get(VERSION_KEY)
        if pinned is not None and scope["path"] not in UNPINNED_PATHS:
            wrong = self.plane.unknown(self.plane.settings.name, pinned.decode("latin-1"))
            if wrong is not None:
                await self._send(send, wrong)
                return
        if scope["method"] != "POST" or scope["path"] not in self.fast_paths:
            await self.router(scope, receive, send)
            return
        self.plane.arrive()
        try:
            raw = await read_body(receive, headers.get(b"content-length"), self.max_body_bytes)
        except BodyTooLarge:
            self.plane.depart()
            await self._send(send, too_large(self.max_body_bytes))
            return
        except ClientGone:
            self.plane.depart()
            return
        binary_header = headers.get(BINARY_KEY)
        await self._send(send, await self.plane.infer(
            raw, binary_header.decode("latin-1") if binary_header else None))

    @staticmethod
    async def _send(send: Send, answer: Answer) -> None:
        status, body, headers = answer
        if headers == JSON:
            raw = [*JSON_HEADERS, (b"content-length", b"%d" % len(body))]
        else:
            raw = [(k.encode(), v.encode()) for k, v in headers.items()]
            raw.append((b"content-length", b"%d" % len(body)))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})
