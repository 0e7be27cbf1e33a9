"""The tests' OTLP receiver against OpenTelemetry's own OTLP/HTTP exporter:
what the e2e tracing test reads is what a collector would have received."""

from __future__ import annotations

import gzip
import http.client

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from tests.otlp import serve_otlp


def test_spans_arrive_with_their_links_and_attributes() -> None:
    with serve_otlp("127.0.0.1") as (receiver, port):
        for compression in (Compression.NoCompression, Compression.Gzip):
            provider = TracerProvider(resource=Resource.create({"service.name": "probe"}))
            provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
                endpoint=f"http://127.0.0.1:{port}/v1/traces", compression=compression)))
            tracer = provider.get_tracer("t")
            with tracer.start_as_current_span("outer") as outer:
                with tracer.start_as_current_span("inner", attributes={"aiart.model": "m"}):
                    pass
            provider.shutdown()
            trace_id = f"{outer.get_span_context().trace_id:032x}"
            spans = {s.name: s for s in receiver.in_trace(trace_id)}
            assert set(spans) == {"outer", "inner"}
            assert spans["inner"].parent_id == spans["outer"].span_id
            assert spans["outer"].parent_id == "" and spans["inner"].service == "probe"
            assert receiver.where(**{"aiart.model": "m"})
        assert receiver.errors == []


def test_a_chunked_gzip_body_as_gos_exporter_sends_it() -> None:
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(
        spans=[Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="gw")])])])
    body = gzip.compress(request.SerializeToString())
    with serve_otlp("127.0.0.1") as (receiver, port):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        chunks = [body[:10], body[10:]]
        connection.request("POST", "/v1/traces", body=iter(chunks), encode_chunked=True,
                           headers={"Content-Encoding": "gzip", "Transfer-Encoding": "chunked",
                                    "Content-Type": "application/x-protobuf"})
        assert connection.getresponse().status == 200
        (span,) = receiver.in_trace("01" * 16)
        assert span.name == "gw" and span.span_id == "02" * 8 and span.parent_id == ""
