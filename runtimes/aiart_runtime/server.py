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
from .metrics import ServerMetrics
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


def create_app(model: ServedModel, *, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
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

    async def infer(request: Request) -> Response:
        if (bad := check_model(request)) is not None:
            return bad
        started = time.perf_counter()
        metrics.inflight.inc()
        try:
            response = await _infer(request)
        finally:
            metrics.inflight.dec()
        outcome = "ok" if response.status_code < 400 else (
            "client_error" if response.status_code < 500 else "server_error")
        metrics.observe("infer", outcome, time.perf_counter() - started)
        return response

    async def _infer(request: Request) -> Response:
        try:
            raw = await read_body(request, max_body_bytes)
            header, binary = split_binary(raw, request.headers.get(BINARY_HEADER))
            req = decode_request(orjson.loads(header), binary)
            results = model.infer(req.inputs, req.requested_outputs)
        except BodyTooLarge:
            return error(413, f"request body is larger than {max_body_bytes} bytes")
        except orjson.JSONDecodeError as exc:
            return error(400, f"request body is not valid JSON: {exc}")
        except ProtocolError as exc:
            return error(400, str(exc))
        except Exception as exc:  # the model's own failure on valid input
            log.exception("inference failed")
            return error(500, f"the model failed: {type(exc).__name__}: {exc}")
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
        if not payloads:
            return JSONResponse(answer)
        header = orjson.dumps(answer)
        return Response(
            header + b"".join(payloads), media_type="application/octet-stream",
            headers={BINARY_HEADER: str(len(header))},
        )

    async def predict(request: Request) -> Response:
        started = time.perf_counter()
        try:
            body = orjson.loads(await read_body(request, max_body_bytes))
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
        outcome = "ok" if response.status_code < 400 else "client_error"
        metrics.observe("predict", outcome, time.perf_counter() - started)
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
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    app.state.metrics = metrics
    return app


def vars_of(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}
