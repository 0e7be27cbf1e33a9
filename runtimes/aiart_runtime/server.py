"""The HTTP server: Open Inference Protocol, /predict and /metrics.

One server for every runtime: a runtime is an object with ``load()``,
metadata and ``predict()``; this module only speaks HTTP.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import __version__
from .gateway_only import GatewayOnly
from .metrics import ServerMetrics, outcome_of
from .model import ServedModel
from .protocol import ProtocolError, decode_request, encode_binary, encode_tensor, split_binary

log = logging.getLogger("aiart_runtime")
MAX_BODY_BYTES = 16 * 1024 * 1024
BINARY_HEADER = "Inference-Header-Content-Length"


class JSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class BodyTooLarge(Exception):
    pass


async def read_body(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(
    model: ServedModel, *, max_body_bytes: int = MAX_BODY_BYTES,
    gate: GatewayOnly | None = None,
) -> ModelServerApp:
    settings = model.settings
    metrics = ServerMetrics(model=settings.name, version=settings.version, runtime=model.platform)

    def check_model(request: Request) -> JSONResponse | None:
        name = request.path_params["model"]
        version = request.path_params.get("version")
        if name != settings.name:
            return error(
                404, f"model {name!r} is not served here; this server has {settings.name!r}"
            )
        if version is not None and version != settings.version:
            return error(
                404, f"model {name!r} has no version {version!r} here; it has {settings.version!r}"
            )
        return None

    async def live(_: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(_: Request) -> Response:
        return JSONResponse({"ready": model.ready})

    async def server_metadata(_: Request) -> Response:
        return JSONResponse({"name": "aiart", "version": __version__, "extensions": []})

    async def model_metadata(request: Request) -> Response:
        if (bad := check_model(request)) is not None:
            return bad
        return JSONResponse({
            "name": settings.name,
            "versions": [settings.version],
            "platform": model.platform,
            "inputs": [vars_of(t) for t in model.input_specs()],
            "outputs": [vars_of(t) for t in model.output_specs()],
        })

    async def model_ready(request: Request) -> Response:
        if (bad := check_model(request)) is not None:
            return bad
        return JSONResponse({"name": settings.name, "ready": model.ready})

    async def run_infer(raw: bytes, binary_header: str | None) -> tuple[int, bytes, dict[str, str]]:
        """Inference on a request body: status, body and headers. Shared by the
        router and the fast path below, so both answer exactly alike."""
        started = time.perf_counter()
        metrics.inflight.inc()
        try:
            status, body, headers = infer_body(raw, binary_header)
        finally:
            metrics.inflight.dec()
        metrics.observe("infer", outcome_of(status), time.perf_counter() - started,
                        len(raw), len(body))
        return status, body, headers

    def failure(status: int, message: str) -> tuple[int, bytes, dict[str, str]]:
        return status, orjson.dumps({"error": message}), {"content-type": "application/json"}

    def infer_body(raw: bytes, binary_header: str | None) -> tuple[int, bytes, dict[str, str]]:
        try:
            header, binary = split_binary(raw, binary_header)
            req = decode_request(orjson.loads(header), binary)
            results = model.infer(req.inputs, req.requested_outputs)
        except orjson.JSONDecodeError as exc:
            return failure(400, f"request body is not valid JSON: {exc}")
        except ProtocolError as exc:
            return failure(400, str(exc))
        except Exception as exc:  # the model's own failure on valid input
            log.exception("inference failed")
            return failure(500, f"the model failed: {type(exc).__name__}: {exc}")
        outputs: list[dict[str, Any]] = []
        payloads: list[bytes] = []
        for name, array in results:
            if req.wants_binary(name):
                entry, payload = encode_binary(name, array)
                outputs.append(entry)
                payloads.append(payload)
            else:
                outputs.append(encode_tensor(name, array))
        answer: dict[str, Any] = {
            "model_name": settings.name,
            "model_version": settings.version,
            "outputs": outputs,
        }
        if req.id is not None:
            answer["id"] = req.id
        body = orjson.dumps(answer, option=orjson.OPT_SERIALIZE_NUMPY)
        if not payloads:
            return 200, body, {"content-type": "application/json"}
        return 200, body + b"".join(payloads), {
            "content-type": "application/octet-stream", BINARY_HEADER.lower(): str(len(body))}

    async def infer(request: Request) -> Response:
        if (bad := check_model(request)) is not None:
            return bad
        try:
            raw = await read_body(request, max_body_bytes)
        except BodyTooLarge:
            return error(413, f"request body is larger than {max_body_bytes} bytes")
        status, body, headers = await run_infer(raw, request.headers.get(BINARY_HEADER))
        media = headers.pop("content-type")
        return Response(body, status_code=status, media_type=media, headers=headers)

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        raw = b""
        try:
            raw = await read_body(request, max_body_bytes)
            body = orjson.loads(raw)
            rows = body.get("instances") if isinstance(body, dict) else body
            predictions = model.predict_rows(rows)
            # orjson writes numeric arrays natively; object arrays (labels) as lists.
            if predictions.dtype == object:
                predictions = predictions.tolist()
            response = JSONResponse({"predictions": predictions})
        except BodyTooLarge:
            response = error(413, f"request body is larger than {max_body_bytes} bytes")
        except orjson.JSONDecodeError as exc:
            response = error(400, f"request body is not valid JSON: {exc}")
        except ProtocolError as exc:
            response = error(400, str(exc))
        except Exception as exc:
            log.exception("prediction failed")
            response = error(500, f"the model failed: {type(exc).__name__}: {exc}")
        metrics.observe("predict", outcome_of(response.status_code),
                        time.perf_counter() - started, len(raw), len(response.body))
        return response

    async def prometheus(_: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return error(exc.status_code, str(exc.detail))

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
    router.state.metrics = metrics
    fast_paths = {f"/v2/models/{settings.name}/infer",
                  f"/v2/models/{settings.name}/versions/{settings.version}/infer"}
    return ModelServerApp(router, fast_paths, run_infer, max_body_bytes, gate)


class ModelServerApp:
    """The ASGI app: inference requests for this model take a direct path
    (no router, no request objects: a measurable part of a small model's
    latency); everything else goes through Starlette's router."""

    def __init__(self, router: Starlette, fast_paths: set[str], run_infer: Any,
                 max_body_bytes: int, gate: GatewayOnly | None = None) -> None:
        self.router = router
        self.state = router.state
        self.fast_paths = fast_paths
        self.run_infer = run_infer
        self.max_body_bytes = max_body_bytes
        self.gate = gate

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.gate is not None and scope["type"] == "http":
            client = (scope.get("client") or ("", 0))[0]
            if not await self.gate.allows(client, scope["path"]):
                await self._send(send, 403, orjson.dumps(
                    {"error": "only aiart's gateway may call this model"}),
                    {"content-type": "application/json"})
                return
        if (scope["type"] != "http" or scope["method"] != "POST"
                or scope["path"] not in self.fast_paths):
            await self.router(scope, receive, send)
            return
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_body_bytes:
            await self._send(send, 413, orjson.dumps(
                {"error": f"request body is larger than {self.max_body_bytes} bytes"}),
                {"content-type": "application/json"})
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await self._send(send, 413, orjson.dumps(
                    {"error": f"request body is larger than {self.max_body_bytes} bytes"}),
                    {"content-type": "application/json"})
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        binary_header = headers.get(BINARY_HEADER.lower().encode())
        status, body, extra = await self.run_infer(
            b"".join(chunks), binary_header.decode("latin-1") if binary_header else None)
        await self._send(send, status, body, extra)

    @staticmethod
    async def _send(send: Any, status: int, body: bytes, headers: dict[str, str]) -> None:
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]
        raw.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": body})


def vars_of(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}
