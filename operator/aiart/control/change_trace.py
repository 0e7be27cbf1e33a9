"""Traces of the operator's work on one model version.

A change of a version (its service missing or out of date) is one trace,
under the version's config id: ``reconcile`` with children ``parse``,
``build``, ``push`` and ``deploy``; the readiness probes of the passes that
follow join it as ``probe`` spans, and as their requests carry the trace
(W3C ``traceparent``), so do the gateway's and the model server's spans.
Passes that find nothing to do make no span. With tracing off (no OTLP
endpoint) the tracer is OpenTelemetry's no-op one.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.context import Context

tracer = trace.get_tracer("aiart.operator")


def attributes(model: str, version: str, config_id: str) -> dict[str, str]:
    return {"aiart.model": model, "aiart.version": version, "aiart.config.id": config_id}


@contextmanager
def change(traces: MutableMapping[str, Context], *, model: str, version: str, config_id: str,
           started_ns: int, parsed_ns: int) -> Iterator[None]:
    """The root span of a change, begun when the pass began; the parse it
    already did is recorded with its own times."""
    attrs = attributes(model, version, config_id)
    root = tracer.start_span(f"reconcile {model}:{version}", start_time=started_ns,
                             attributes=attrs)
    context = trace.set_span_in_context(root)
    tracer.start_span("parse", context=context, start_time=started_ns,
                      attributes=attrs).end(end_time=parsed_ns)
    traces[config_id] = context
    with trace.use_span(root, end_on_exit=True):
        yield


@contextmanager
def probe(traces: MutableMapping[str, Context], config_id: str) -> Iterator[None]:
    """A readiness probe: part of its version's last change while it waits."""
    parent = traces.get(config_id)
    if parent is None:
        yield
        return
    with tracer.start_as_current_span("probe", context=parent):
        yield


def settled(traces: MutableMapping[str, Context], config_id: str) -> None:
    """The change is over (Ready, Failed or gone): later probes are not part of it."""
    traces.pop(config_id, None)
