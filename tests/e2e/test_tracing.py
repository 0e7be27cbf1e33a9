"""One trace across the gateway and the model, and the operator's change of a
version as one trace that its probes carry through the gateway to the model.
Spans go to an OTLP receiver this test serves (tests/otlp.py); Traefik and
the operator are pointed at it for the test's length, then put back."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import GATEWAY, STACK, Models, running_task_ids, wait_for
from tests.otlp import ReceivedSpan, Receiver, serve_otlp

# Both restart services of aiart's stack (gateway and operator for tracing,
# Alertmanager for its webhook): alone, never beside other tests.
pytestmark = [pytest.mark.e2e, pytest.mark.serial]
SERVER = 2  # opentelemetry.proto SPAN_KIND_SERVER
ROW = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                   "data": [5.1, 3.5, 1.4, 0.2]}]}


def restart_with(*changes: tuple[Any, dict[str, Any]]) -> None:
    """Update services together, then wait until each runs only new tasks."""
    before = {}
    for service, change in changes:
        before[service.id] = running_task_ids(service)
        service.reload()
        service.update(**change)
    for service, _ in changes:
        wait_for(lambda s=service: (now := running_task_ids(s)) and not now & before[s.id],
                 120, f"{service.name} to restart")


def gateway_answers() -> bool:
    try:
        return httpx.get(f"{GATEWAY}/", timeout=5).status_code < 500
    except httpx.HTTPError:  # the old task closing its connections
        return False


@pytest.fixture
def receiver(models: Models) -> Iterator[tuple[Receiver, str]]:
    engine = models.engine
    host = engine.networks.get("docker_gwbridge").attrs["IPAM"]["Config"][0]["Gateway"]
    traefik = engine.services.get(f"{STACK}_traefik")
    operator = engine.services.get(f"{STACK}_operator")
    args = list(traefik.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"])
    env = list(operator.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env") or [])
    with serve_otlp() as (spans, port):
        endpoint = f"http://{host}:{port}"
        traced_args = [a for a in args if not a.startswith(("--tracing=", "--tracing.otlp."))]
        traced_env = [e for e in env if not e.startswith("OTEL_")]
        try:
            # Only the operator's own spans: its models keep their settings,
            # so no model is rolled for this test (the traced model asks in
            # its manifest instead).
            restart_with(
                (traefik, {"args": [*traced_args, "--tracing=true",
                                    f"--tracing.otlp.http.endpoint={endpoint}/v1/traces"]}),
                (operator, {"env": [*traced_env, f"OTEL_EXPORTER_OTLP_ENDPOINT={endpoint}",
                                    "OTEL_BSP_SCHEDULE_DELAY=500"]}))
            wait_for(gateway_answers, 60, "the gateway after its restart")
            yield spans, endpoint
        finally:
            restart_with((traefik, {"args": args}), (operator, {"env": env}))


def by_service(spans: list[ReceivedSpan], service: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.service == service]


def test_one_trace_spans_gateway_model_and_operator(
        models: Models, iris_pickle: bytes, receiver: tuple[Receiver, str]) -> None:
    spans, endpoint = receiver
    model = models.name("traced")
    config = models.declare(model, "1", iris_pickle, env=(
        f'{{OTEL_EXPORTER_OTLP_ENDPOINT: "{endpoint}", OTEL_BSP_SCHEDULE_DELAY: "500"}}'))
    models.wait_status(config, "Ready")
    runtime = f"aiart-model-{model}"

    # A caller's request, with the caller's own trace context.
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    answer = httpx.post(f"{GATEWAY}/v2/models/{model}/infer", json=ROW, timeout=10,
                        headers={"traceparent": f"00-{trace_id}-{caller_span}-01"})
    assert answer.status_code == 200, answer.text
    # The gateway's entry span ends last (after the answer): its batch may
    # come after those of the middleware spans inside it.
    wait_for(lambda: by_service(spans.in_trace(trace_id), runtime)
             and any(s.parent_id == caller_span
                     for s in by_service(spans.in_trace(trace_id), "aiart-gateway")), 60,
             "the gateway's and the model's spans of the request")
    request = spans.in_trace(trace_id)
    gateway = by_service(request, "aiart-gateway")
    (served,) = by_service(request, runtime)
    assert any(s.parent_id == caller_span for s in gateway), "the gateway continues the caller"
    assert served.parent_id in {s.span_id for s in gateway}, "the model is the gateway's child"
    assert served.kind == SERVER and served.name == f"POST /v2/models/{model}/infer"

    # The operator's change of the version: one trace under its config id,
    # which its readiness probes carried through the gateway to the model.
    config_id = models.engine.configs.get(config).id
    roots = wait_for(lambda: [s for s in spans.where(**{"aiart.config.id": config_id})
                              if s.name == f"reconcile {model}:1"], 30,
                     "the operator's reconcile span")
    change = spans.in_trace(roots[0].trace_id)
    operator = by_service(change, "aiart-operator")
    steps = {s.name for s in operator if s.parent_id == roots[0].span_id}
    assert {"parse", "build", "push", "deploy", "probe"} <= steps, steps
    probes = {s.span_id for s in operator if s.name == "probe"}
    wait_for(lambda: by_service(spans.in_trace(roots[0].trace_id), runtime), 30,
             "a probe's request at the model")
    change = spans.in_trace(roots[0].trace_id)
    through = by_service(change, "aiart-gateway")
    assert any(s.parent_id in probes for s in through), "the gateway continues the probe"
    assert all(s.parent_id in {g.span_id for g in through} for s in by_service(change, runtime))
    assert spans.errors == []
