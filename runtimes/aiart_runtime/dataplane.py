"""The data plane: what a model server answers, apart from how HTTP carries it.

Decoding an Open Inference Protocol request (JSON or binary tensors),
running the model, encoding its answer, metadata, and the metrics of each
call. ``server.py`` carries these answers over HTTP (``grpc_server.py``
runs the same model over gRPC); every answer here is a status, a body and
its headers, so the router and the fast path answer exactly alike.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from . import __version__
from .batching import Batcher, Outputs
from .metrics import ServerMetrics, outcome_of
from .model import ServedModel
from .payloads import Exchange, PayloadLog
from .protocol import (
    InferenceRequest,
    ProtocolError,
    decode_request,
    encode_binary,
    encode_tensor,
    split_binary,
)

log = logging.getLogger("aiart_runtime")
BINARY_HEADER = "Inference-Header-Content-Length"
JSON = {"content-type": "application/json"}

# status, body, headers
Answer = tuple[int, bytes, dict[str, str]]


def dumps(content: Any) -> bytes:
    return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def failure(status: int, message: str) -> Answer:
    return status, dumps({"error": message}), dict(JSON)


def _length(header: str | None) -> int | None:
    """Inference-Header-Content-Length as a number, None when absent or bad
    (a bad one was already answered with 400)."""
    try:
        return None if header is None else int(header)
    except ValueError:
        return None


def vars_of(spec: Any) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


class DataPlane:
    """One model's answers, and the metrics of the calls that get them."""

    def __init__(self, model: ServedModel, payloads: PayloadLog | None = None) -> None:
        self.model = model
        # spec.logging: a sample of requests and answers to the model's bucket.
        self.payloads = payloads
        self.settings = model.settings
        self.metrics = ServerMetrics(model=self.settings.name, version=self.settings.version,
                                     runtime=model.platform)
        self.metrics.payloads = payloads
        batching = self.settings.batching
        self.batcher = None if batching is None else Batcher(
            model.infer, max_batch_size=batching.max_batch_size,
            max_latency_ms=batching.max_latency_ms, observe=self.metrics.batch_rows.observe)
        # When a caller last reached this server (its health aside), and
        # whether it is told to stop: a task told to stop answers until the
        # gateway has stopped sending it requests (__main__.py), and says it
        # is not ready meanwhile, so that nothing new picks it.
        self.last_called = time.monotonic()
        self.draining = False

    def called(self) -> None:
        self.last_called = time.monotonic()

    @property
    def ready(self) -> bool:
        return self.model.ready and not self.draining

    def arrive(self) -> None:
        """An inference request has begun (its body is on its way): a batch
        waits for it (batching.py)."""
        if self.batcher is not None:
            self.batcher.arrive()

    def depart(self) -> None:
        """A request that arrived will not reach ``infer`` (its body was
        refused, or its caller left)."""
        if self.batcher is not None:
            self.batcher.depart()

    def unknown(self, name: str, version: str | None) -> Answer | None:
        """A 404 for a model or version this server does not have, else None."""
        problem = self.not_served(name, version)
        return None if problem is None else failure(404, problem)

    def not_served(self, name: str, version: str | None) -> str | None:
        """Why this server does not serve ``name`` (``version``), or None."""
        if name != self.settings.name:
            return (f"model {name!r} is not served here; this server has "
                    f"{self.settings.name!r}")
        if version is not None and version != self.settings.version:
            return (f"model {name!r} has no version {version!r} here; it has "
                    f"{self.settings.version!r}")
        return None

    @staticmethod
    def server_metadata() -> dict[str, Any]:
        return {"name": "aiart", "version": __version__, "extensions": []}

    def model_metadata(self) -> dict[str, Any]:
        return {
            "name": self.settings.name,
            "versions": [self.settings.version],
            "platform": self.model.platform,
            "inputs": [vars_of(t) for t in self.model.input_specs()],
            "outputs": [vars_of(t) for t in self.model.output_specs()],
        }

    async def infer(self, raw: bytes, binary_header: str | None) -> Answer:
        """An OIP inference request's body to its answer, counted (after
        ``arrive``)."""
        started = time.perf_counter()
        self.metrics.inflight.inc()
        try:
            status, body, headers = await self._infer(raw, binary_header)
        finally:
            self.metrics.inflight.dec()
        seconds = time.perf_counter() - started
        self.metrics.observe("infer", outcome_of(status), seconds, len(raw), len(body))
        if self.payloads is not None:
            self.payloads.offer(lambda: Exchange(
                at=time.time(), protocol="http", endpoint="infer", status=status,
                seconds=seconds, request=raw, response=body,
                request_json_bytes=_length(binary_header),
                response_json_bytes=_length(headers.get(BINARY_HEADER.lower()))))
        return status, body, headers

    async def run(self, req: InferenceRequest) -> Outputs:
        """The model's outputs for a decoded request (after ``arrive``),
        merged with others' when batching is on; ProtocolError when the
        inputs do not fit the model. HTTP and gRPC alike."""
        if self.batcher is None:
            return self.model.infer(req.inputs, req.requested_outputs)
        return await self.batcher.infer(req.inputs, req.requested_outputs)

    async def _infer(self, raw: bytes, binary_header: str | None) -> Answer:
        try:
            try:
                header, binary = split_binary(raw, binary_header)
                req = decode_request(orjson.loads(header), binary)
            except Exception:
                self.depart()
                raise
            results = await self.run(req)
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
            "model_name": self.settings.name,
            "model_version": self.settings.version,
            "outputs": outputs,
        }
        if req.id is not None:
            answer["id"] = req.id
        body = dumps(answer)
        if not payloads:
            return 200, body, dict(JSON)
        return 200, body + b"".join(payloads), {
            "content-type": "application/octet-stream", BINARY_HEADER.lower(): str(len(body))}

    def predict(self, raw: bytes, started: float) -> Answer:
        """A ``/predict`` body (``{"instances": rows}`` or rows) to its answer,
        counted from ``started`` (when its request came in)."""
        status, body, headers = self._predict(raw)
        seconds = time.perf_counter() - started
        self.metrics.observe("predict", outcome_of(status), seconds, len(raw), len(body))
        if self.payloads is not None:
            self.payloads.offer(lambda: Exchange(
                at=time.time(), protocol="http", endpoint="predict", status=status,
                seconds=seconds, request=raw, response=body))
        return status, body, headers

    def _predict(self, raw: bytes) -> Answer:
        try:
            body = orjson.loads(raw)
            rows = body.get("instances") if isinstance(body, dict) else body
            predictions = self.model.predict_rows(rows)
            # orjson writes numeric arrays natively; object arrays (labels) as lists.
            if predictions.dtype == object:
                predictions = predictions.tolist()
            return 200, dumps({"predictions": predictions}), dict(JSON)
        except orjson.JSONDecodeError as exc:
            return failure(400, f"request body is not valid JSON: {exc}")
        except ProtocolError as exc:
            return failure(400, str(exc))
        except Exception as exc:
            log.exception("prediction failed")
            return failure(500, f"the model failed: {type(exc).__name__}: {exc}")
