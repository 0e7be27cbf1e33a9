"""OpenTelemetry tracing, on when an OTLP endpoint is configured.

Configured only by the standard ``OTEL_*`` variables: tracing is on when
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``..._TRACES_ENDPOINT``) is set and
``OTEL_SDK_DISABLED`` is not true; the exporter speaks OTLP over HTTP
(protobuf) and reads the rest (headers, timeout, sampler) itself. Off, no
span is ever made: the inference path pays nothing for it.

Shared by the model server and aiart's own services (one wheel, no other
aiart dependency).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, StatusCode

# Probed every few seconds: traced only when the caller traces them.
QUIET_PATHS = ("/metrics", "/v2/health/", "/ping")


def otlp_endpoint(env: Mapping[str, str] | None = None) -> str:
    """Where traces go, as OpenTelemetry's own variables say (the SDK reads
    the same ones); empty: tracing is off."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return ""
    return (env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
            or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip())


def tracing_enabled(env: Mapping[str, str] | None = None) -> bool:
    return bool(otlp_endpoint(env))


def configure(service_name: str, attributes: Mapping[str, str] | None = None) -> bool:
    """Install a tracer provider exporting over OTLP/HTTP; False when tracing is off."""
    if not tracing_enabled():
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES still win: a site's own names.
    resource = Resource.create({**(attributes or {}), "service.name": os.environ.get(
        "OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True


class _Headers(Getter[list[tuple[bytes, bytes]]]):
    """A read-only getter over ASGI headers for the propagator."""

    def get(self, carrier: list[tuple[bytes, bytes]], key: str) -> list[str] | None:
        wanted = key.lower().encode("latin-1")
        found = [v.decode("latin-1") for k, v in carrier if k.lower() == wanted]
        return found or None

    def keys(self, carrier: list[tuple[bytes, bytes]]) -> list[str]:
        return [k.decode("latin-1") for k, _ in carrier]


_HEADERS = _Headers()


class TracingMiddleware:
    """One SERVER span per HTTP request, child of the caller's ``traceparent``."""

    def __init__(self, app: Any, tracer_name: str) -> None:
        self.app = app
        self.tracer = trace.get_tracer(tracer_name)
        self.state = getattr(app, "state", None)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = scope.get("headers") or []
        path = scope.get("path", "")
        parent = extract(headers, getter=_HEADERS)
        if path.startswith(QUIET_PATHS) and not trace.get_current_span(parent).get_span_context(
                ).is_valid:
            await self.app(scope, receive, send)
            return
        status = 500

        async def send_status(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        method = scope.get("method", "GET")
        with self.tracer.start_as_current_span(
                f"{method} {path}", context=parent, kind=SpanKind.SERVER,
                attributes={"http.request.method": method, "url.path": path}) as span:
            await self.app(scope, receive, send_status)
            span.set_attribute("http.response.status_code", status)
            if status >= 500:
                span.set_status(StatusCode.ERROR)
