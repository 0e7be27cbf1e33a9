"""Tracing: the model server continues the caller's trace; the operator makes
one trace per change of a version (parse, build, push, deploy, then probes)
and none for passes that find nothing to do."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiart.control.deps import Deps
from aiart.control.reconcile import reconcile_model
from aiart.core import labels as L
from aiart.core.settings import OperatorSettings
from aiart_runtime.__main__ import load
from aiart_runtime.server import create_app
from aiart_runtime.tracing import TracingMiddleware, tracing_enabled
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.testclient import TestClient

from tests.fakes import (
    FakeBuilder,
    FakeCluster,
    FakeGateway,
    iris_model_dir,
    manifest_yaml,
    tiny_model,
)

_EXPORTER = InMemorySpanExporter()
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    # One provider per process (OpenTelemetry allows one); cleared per test.
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


def test_tracing_is_on_only_with_an_endpoint() -> None:
    assert not tracing_enabled({})
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"})
    assert tracing_enabled({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert not tracing_enabled({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                                "OTEL_SDK_DISABLED": "true"})


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    path = iris_model_dir(tmp_path_factory.mktemp("model"))
    app = TracingMiddleware(create_app(load(path), max_body_bytes=64 * 1024), "aiart_runtime")
    return TestClient(app)


def hex_ids(span: ReadableSpan) -> tuple[str, str | None]:
    parent = span.parent
    return (f"{span.context.trace_id:032x}",
            f"{parent.span_id:016x}" if parent is not None else None)


def test_the_model_server_continues_the_callers_trace(
        model_server: TestClient, spans: InMemorySpanExporter) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                        "data": [5.1, 3.5, 1.4, 0.2]}]}
    answer = model_server.post("/v2/models/iris/infer", content=json.dumps(body), headers={
        "traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert answer.status_code == 200
    (span,) = spans.get_finished_spans()
    assert hex_ids(span) == (TRACE_ID, PARENT_ID)
    assert span.kind is SpanKind.SERVER and span.name == "POST /v2/models/iris/infer"
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 200


class Broken:
    """An estimator that fails on any input: the model's own failure."""

    def predict(self, matrix: object) -> object:
        raise RuntimeError("the estimator broke")

    predict_proba = predict


def test_server_errors_mark_the_span_and_probes_stay_quiet(
        tmp_path: Path, spans: InMemorySpanExporter) -> None:
    model = load(iris_model_dir(tmp_path))
    model.estimator = Broken()  # type: ignore[attr-defined]
    model_server = TestClient(TracingMiddleware(create_app(model), "aiart_runtime"))
    row = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                       "data": [5.1, 3.5, 1.4, 0.2]}]}
    failed = model_server.post("/v2/models/iris/infer", json=row)
    assert failed.status_code == 500
    assert model_server.get("/v2/health/ready").status_code == 200  # no caller trace: no span
    assert model_server.get("/metrics").status_code == 200
    (span,) = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert hex_ids(span)[1] is None  # a new trace: the caller sent none
    model_server.get("/v2/health/ready", headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert [s.name for s in spans.get_finished_spans()][-1] == "GET /v2/health/ready"


async def test_a_change_is_one_trace_under_its_config_id(spans: InMemorySpanExporter) -> None:
    cluster = FakeCluster()
    deps = Deps(cluster=cluster, builder=FakeBuilder(), gateway=FakeGateway(cluster),
                settings=OperatorSettings())
    cluster.add_config("m-art", tiny_model())
    config_id = cluster.add_config("m-1", manifest_yaml("m", "1", "m-art"), {L.MODEL: "m"})
    for _ in range(6):
        await reconcile_model(deps, "m")
    assert cluster.configs[config_id].labels[L.STATUS] == "Ready"
    done = spans.get_finished_spans()
    (root,) = [s for s in done if s.name == "reconcile m:1"]
    assert root.attributes is not None and root.attributes["aiart.config.id"] == config_id
    trace_id = root.context.trace_id
    children = {s.name: s for s in done if s.parent and s.parent.span_id == root.context.span_id}
    assert set(children) >= {"parse", "build", "push", "deploy", "probe"}
    assert all(s.context.trace_id == trace_id for s in done)
    assert children["parse"].end_time <= children["build"].start_time  # type: ignore[operator]
    assert children["build"].end_time <= children["push"].start_time  # type: ignore[operator]
    assert children["push"].end_time <= children["deploy"].start_time  # type: ignore[operator]

    spans.clear()
    for _ in range(3):
        await reconcile_model(deps, "m")  # settled: nothing to do, nothing traced
    assert spans.get_finished_spans() == ()


async def test_a_failed_version_ends_its_trace(spans: InMemorySpanExporter) -> None:
    cluster = FakeCluster()
    deps = Deps(cluster=cluster, builder=FakeBuilder(), gateway=FakeGateway(cluster),
                settings=OperatorSettings())
    cluster.failing_services.add("aiart-m-1")
    cluster.add_config("m-art", tiny_model())
    config_id = cluster.add_config("m-1", manifest_yaml("m", "1", "m-art"), {L.MODEL: "m"})
    for _ in range(4):
        await reconcile_model(deps, "m")
    assert cluster.configs[config_id].labels[L.STATUS] == "Failed"
    assert config_id not in deps.traces
    spans.clear()
    await reconcile_model(deps, "m")
    assert not [s for s in spans.get_finished_spans() if s.name == "probe"]


async def test_a_grpc_call_continues_the_callers_trace(
        spans: InMemorySpanExporter, tmp_path: Path) -> None:
    import grpc
    from aiart_runtime.grpc_server import SERVICE, create_server
    from aiart_runtime.oip import messages as pb

    app = create_app(load(iris_model_dir(tmp_path)))
    server, port = create_server(app.plane, address="127.0.0.1:0", max_message_bytes=1 << 20,
                                 traced=True)
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            infer = channel.unary_unary(f"/{SERVICE}/ModelInfer",
                                        request_serializer=pb.ModelInferRequest.SerializeToString,
                                        response_deserializer=pb.ModelInferResponse.FromString)
            request = pb.ModelInferRequest(model_name="iris")
            tensor = request.inputs.add(name="x", datatype="FP64", shape=[1, 4])
            tensor.contents.fp64_contents.extend([5.1, 3.5, 1.4, 0.2])
            await infer(request, metadata=(("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-01"),))
            live = channel.unary_unary(f"/{SERVICE}/ServerLive",
                                       request_serializer=pb.ServerLiveRequest.SerializeToString,
                                       response_deserializer=pb.ServerLiveResponse.FromString)
            await live(pb.ServerLiveRequest())  # probed: not traced unless the caller is
    finally:
        await server.stop(0)
    finished: list[ReadableSpan] = list(spans.get_finished_spans())
    assert [s.name for s in finished] == [f"{SERVICE}/ModelInfer"]
    (span,) = finished
    assert span.kind is SpanKind.SERVER
    assert format(span.context.trace_id, "032x") == TRACE_ID
    assert span.parent is not None and format(span.parent.span_id, "016x") == PARENT_ID
    assert span.attributes is not None
    assert (span.attributes["rpc.method"], span.attributes["rpc.grpc.status_code"]) == (
        "ModelInfer", 0)
