"""The model server over gRPC: the Open Inference Protocol's gRPC service.

It runs beside the HTTP server, in the same process and event loop, on the
same data plane: the same model, the same batcher (a gRPC call and an HTTP
call can share a batch) and the same metrics (``endpoint="grpc"``).

The gateway routes a gRPC call by its metadata, since a call's path names
only the RPC and the model is in the message: ``aiart-model: NAME``, and
``aiart-version: V`` to pin a version (docs/runtimes.md). The server
checks both against what it serves, so a call never gets another model's
or version's answer. As on HTTP, only the gateway may call inference and
metadata (its token in ``x-aiart-gateway``); liveness and readiness stay
open.

Errors are gRPC status codes: INVALID_ARGUMENT for a request that does not
follow the protocol or fit the model (HTTP's 400), NOT_FOUND for another
model or version (404), PERMISSION_DENIED for a caller that is not the
gateway (403), INTERNAL when the model itself fails (500); the message says
what, in the HTTP side's words.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import orjson
from grpc import aio
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, StatusCode

from .dataplane import DataPlane
from .gateway_only import HEADER as GATEWAY_HEADER
from .gateway_only import GatewayOnly
from .oip import messages as pb
from .oip.codec import decode_infer, encode_infer, tensor_metadata
from .payloads import Exchange
from .protocol import ProtocolError

log = logging.getLogger("aiart_runtime")

SERVICE = "inference.GRPCInferenceService"
GRPC_PORT = 8081
# The metadata the gateway routes a call by (aiart/core/render.py names the same).
MODEL_HEADER = "aiart-model"
VERSION_HEADER = "aiart-version"
# Answered to anyone, as the HTTP side's health paths are; traced only when
# the caller traces them (they are probed).
OPEN_METHODS = frozenset({"ServerLive", "ServerReady", "ModelReady"})


class Refused(Exception):
    """A call answered with a status other than OK."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_OUTCOMES = {grpc.StatusCode.OK: "ok", grpc.StatusCode.INTERNAL: "server_error"}


def peer_host(peer: str) -> str:
    """The address in gRPC's peer string ("ipv4:10.0.0.5:4242", "ipv6:[::1]:4242")."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6":
        return rest.rpartition("]")[0].lstrip("[")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return ""


class InferenceService:
    """The RPCs of ``inference.GRPCInferenceService`` for one model."""

    def __init__(self, plane: DataPlane, gate: GatewayOnly | None = None,
                 tracer: trace.Tracer | None = None) -> None:
        self.plane = plane
        self.model = plane.model
        self.settings = plane.settings
        self.gate = gate
        self.tracer = tracer

    # Each RPC: the message in, the answer out, or Refused.

    async def server_live(self, _: pb.ServerLiveRequest) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, _: pb.ServerReadyRequest) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.plane.ready)

    async def model_ready(self, request: pb.ModelReadyRequest) -> pb.ModelReadyResponse:
        self._served(request.name, request.version)
        return pb.ModelReadyResponse(ready=self.model.ready)

    async def server_metadata(self, _: pb.ServerMetadataRequest) -> pb.ServerMetadataResponse:
        meta = self.plane.server_metadata()
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"],
                                         extensions=meta["extensions"])

    async def model_metadata(self, request: pb.ModelMetadataRequest
                             ) -> pb.ModelMetadataResponse:
        self._served(request.name, request.version)
        meta = self.plane.model_metadata()
        return pb.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=tensor_metadata(meta["inputs"]), outputs=tensor_metadata(meta["outputs"]))

    async def model_infer(self, request: pb.ModelInferRequest) -> pb.ModelInferResponse:
        self._served(request.model_name, request.model_version)
        self.plane.arrive()
        try:
            decoded = decode_infer(request)
        except ProtocolError as exc:
            self.plane.depart()
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        try:
            results = await self.plane.run(decoded)
            return encode_infer(self.settings.name, self.settings.version, decoded.id,
                                results, raw=bool(request.raw_input_contents))
        except ProtocolError as exc:
            raise Refused(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        except Exception as exc:  # the model's own failure on valid input
            log.exception("inference failed")
            raise Refused(grpc.StatusCode.INTERNAL,
                          f"the model failed: {type(exc).__name__}: {exc}") from None

    def _served(self, name: str, version: str) -> None:
        problem = self.plane.not_served(name, version or None)
        if problem is not None:
            raise Refused(grpc.StatusCode.NOT_FOUND, problem)

    # What every RPC shares: the gateway's check, the routing metadata, the
    # span, the status.

    def handler(self, method: str, run: Callable[[Any], Awaitable[Any]]
                ) -> Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]]:
        infer = method == "ModelInfer"
        counted = method not in ("ServerLive", "ServerReady")  # health, as over HTTP
        metrics = self.plane.metrics

        async def call(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            if counted:
                self.plane.called()
            metadata = {k: v for k, v in (context.invocation_metadata() or ())
                        if isinstance(v, str)}
            if infer:
                metrics.inflight.inc()
            code, message, answer = grpc.StatusCode.OK, "", None
            span = self._span(method, metadata)
            admitted = False
            try:
                self._admit(method, metadata, context.peer())
                admitted = True
                answer = await run(request)
            except Refused as refused:
                code, message = refused.code, refused.message
            except asyncio.CancelledError:  # the caller left, or its deadline passed
                code = grpc.StatusCode.CANCELLED
                raise
            except Exception:
                code = grpc.StatusCode.INTERNAL
                raise
            finally:
                if infer:
                    metrics.inflight.dec()
                    seconds = time.perf_counter() - started
                    metrics.observe(
                        "grpc", _OUTCOMES.get(code, "client_error"), seconds,
                        request.ByteSize(),
                        answer.ByteSize() if answer is not None else len(message))
                    if admitted and self.plane.payloads is not None:
                        # What the model answered; not a caller the gateway
                        # check turned away.
                        self._log(request, answer, code, message, seconds)
                if span is not None:
                    span.set_attribute("rpc.grpc.status_code", code.value[0])
                    if code is grpc.StatusCode.INTERNAL:
                        span.set_status(StatusCode.ERROR, message)
                    span.end()
            if answer is None:
                await context.abort(code, message)
            return answer

        return call

    def _log(self, request: Any, answer: Any, code: grpc.StatusCode, message: str,
             seconds: float) -> None:
        assert self.plane.payloads is not None
        self.plane.payloads.offer(lambda: Exchange(
            at=time.time(), protocol="grpc", endpoint="ModelInfer", status=code.name,
            seconds=seconds, request=request,
            response=answer if answer is not None else orjson.dumps({"error": message})))

    def _admit(self, method: str, metadata: dict[str, str], peer: str) -> None:
        if method in OPEN_METHODS:
            return
        if self.gate is not None and not self.gate.allows(
                peer_host(peer), "", (metadata.get(GATEWAY_HEADER.decode()) or "").encode()
                or None):
            raise Refused(grpc.StatusCode.PERMISSION_DENIED,
                          "only aiart's gateway may call this model")
        model = metadata.get(MODEL_HEADER)
        version = metadata.get(VERSION_HEADER)
        if (model and model != self.settings.name) or (
                version and version != self.settings.version):
            raise Refused(grpc.StatusCode.NOT_FOUND, (
                f"the call asks for {model or self.settings.name}"
                f"{':' + version if version else ''}; this server has "
                f"{self.settings.name}:{self.settings.version}"))

    def _span(self, method: str, metadata: dict[str, str]) -> trace.Span | None:
        if self.tracer is None:
            return None
        parent = extract(metadata)
        if method in OPEN_METHODS and not trace.get_current_span(
                parent).get_span_context().is_valid:
            return None
        return self.tracer.start_span(
            f"{SERVICE}/{method}", context=parent, kind=SpanKind.SERVER,
            attributes={"rpc.system": "grpc", "rpc.service": SERVICE, "rpc.method": method})


# method -> (the service's coroutine, request class, response class)
_METHODS: dict[str, tuple[str, Any, Any]] = {
    "ServerLive": ("server_live", pb.ServerLiveRequest, pb.ServerLiveResponse),
    "ServerReady": ("server_ready", pb.ServerReadyRequest, pb.ServerReadyResponse),
    "ModelReady": ("model_ready", pb.ModelReadyRequest, pb.ModelReadyResponse),
    "ServerMetadata": ("server_metadata", pb.ServerMetadataRequest, pb.ServerMetadataResponse),
    "ModelMetadata": ("model_metadata", pb.ModelMetadataRequest, pb.ModelMetadataResponse),
    "ModelInfer": ("model_infer", pb.ModelInferRequest, pb.ModelInferResponse),
}


def create_server(plane: DataPlane, *, address: str, max_message_bytes: int,
                  gate: GatewayOnly | None = None, traced: bool = False) -> tuple[aio.Server, int]:
    """The gRPC server on ``address`` (host:port; port 0 picks one), not yet
    started, and its port."""
    service = InferenceService(plane, gate, trace.get_tracer("aiart_runtime") if traced else None)
    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            service.handler(method, getattr(service, attribute)),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString)
        for method, (attribute, request, response) in _METHODS.items()
    }
    server = aio.server(options=[
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Another process on the same port must fail to start, not share it.
        ("grpc.so_reuseport", 0),
    ])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = server.add_insecure_port(address)
    return server, port
