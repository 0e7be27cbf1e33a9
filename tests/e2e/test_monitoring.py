"""Monitoring through the real stack: Prometheus finds a new model by its
labels and holds the numbers of the traffic sent; a failing model fires an
alert that reaches a webhook this test serves, shows in the version's
``aiart.status.alerts`` label (its status stays Ready) and in ``aiart status``."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder

from tests.e2e.conftest import GATEWAY, STACK, Models, stack_auth, wait_for

# Both restart services of aiart's stack (gateway and operator for tracing,
# Alertmanager for its webhook): alone, never beside other tests.
pytestmark = [pytest.mark.e2e, pytest.mark.serial]
# Through the gateway, with the monitoring password: as a user reaches it.
PROMETHEUS = f"{GATEWAY}/prometheus"
GOOD = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                    "data": [5.1, 3.5, 1.4, 0.2]}]}


def query(promql: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{PROMETHEUS}/api/v1/query", params={"query": promql},
                       auth=stack_auth("monitoring"), timeout=10)
    answer.raise_for_status()
    return answer.json()["data"]["result"]  # type: ignore[no-any-return]


def value(promql: str) -> float | None:
    result = query(promql)
    return float(result[0]["value"][1]) if result else None


def strict_model() -> bytes:
    """Iris behind a one-hot encoder that refuses values it never saw: a
    well-formed request with such a value is the model's own failure, a 500
    (finite numbers: not the caller's missing values)."""
    x, y = load_iris(return_X_y=True)
    model = make_pipeline(OneHotEncoder(handle_unknown="error"),
                          LogisticRegression(max_iter=500)).fit(x, y)
    return pickle.dumps(model, protocol=5)


UNSEEN = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                      "data": [99.0, 3.5, 1.4, 0.2]}]}


class Hooks:
    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []

    def firing(self, model: str, alert: str) -> list[dict[str, Any]]:
        return [a for body in self.received for a in body.get("alerts", [])
                if a.get("status") == "firing" and a["labels"].get("alertname") == alert
                and a["labels"].get("model") == model]


@pytest.fixture
def webhook(models: Models) -> Iterator[Hooks]:
    """A webhook receiver on this host, and Alertmanager pointed at it."""
    hooks = Hooks()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            hooks.received.append(json.loads(body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("0.0.0.0", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    engine = models.engine
    host = engine.networks.get("docker_gwbridge").attrs["IPAM"]["Config"][0]["Gateway"]
    manager = engine.services.get(f"{STACK}_alertmanager")
    before = list(manager.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Env") or [])
    kept = [e for e in before if not e.startswith("AIART_ALERT_WEBHOOK_URL=")]
    manager.update(env=[*kept, f"AIART_ALERT_WEBHOOK_URL=http://{host}:{server.server_port}/hook"])
    try:
        yield hooks
    finally:
        manager.reload()
        manager.update(env=before)
        server.shutdown()


def test_prometheus_reads_a_new_models_numbers_and_a_failure_alerts(
        models: Models, gateway: httpx.Client, webhook: Hooks, run_id: str) -> None:
    model = models.name("watched")
    config = models.declare(model, "1", strict_model(), objectives="{latencyP99Ms: 2000}")
    models.wait_status(config, "Ready")
    url = f"/v2/models/{model}/infer"
    body = json.dumps(GOOD).encode()
    for _ in range(20):
        assert gateway.post(url, content=body).status_code == 200
    sel = f'model="{model}",version="1"'

    # The runtime's numbers, as Prometheus scraped them from the task it found.
    wait_for(lambda: value(f'sum(aiart_requests_total{{{sel},outcome="ok"}})') == 20, 60,
             "Prometheus to scrape the model's 20 requests")
    assert value(f'sum(aiart_request_bytes_sum{{{sel},endpoint="infer"}})') == 20 * len(body)
    assert value(f'sum(aiart_request_duration_seconds_count{{{sel}}})') == 20
    assert value(f'aiart_model_load_seconds{{{sel}}}') is not None
    build = query(f'aiart_build_info{{{sel}}}')
    assert build and build[0]["metric"]["runtime"] == "sklearn"
    # The operator's view of the same model, and its own work.
    wait_for(lambda: value(f'aiart_model_status{{{sel},status="Ready"}}') == 1, 30,
             "the operator's status gauge")
    assert value(f'aiart_model_replicas_running{{{sel}}}') == 1
    assert value(f'aiart_model_latency_objective_seconds{{{sel}}}') == 2.0
    assert (value('sum(aiart_operator_reconciles_total{outcome="ok"})') or 0) > 0
    assert value('aiart_operator_queue_depth') is not None
    # The gateway counted the same requests for the model's route. Wait for
    # a scrape after the last request: one taken mid-way (CI once read 1)
    # is not the answer.
    wait_for(lambda: (value(
        f'sum(traefik_service_requests_total{{service=~"aiart_{model}_1@.*",code="200"}})')
        or 0) >= 20, 30, "Traefik's count of the 20 requests")

    # Now the model fails on every request: the error ratio alert fires.
    failing = json.dumps(UNSEEN).encode()
    stop = threading.Event()

    def fail_steadily() -> None:
        with httpx.Client(base_url=GATEWAY, timeout=10) as client:
            while not stop.is_set():
                client.post(url, content=failing)
                time.sleep(0.2)

    assert gateway.post(url, content=failing).status_code == 500
    sender = threading.Thread(target=fail_steadily, daemon=True)
    sender.start()
    try:
        wait_for(lambda: webhook.firing(model, "AiartModelErrorRatio"), 150,
                 "the error ratio alert at the webhook", every=1)
        labels = wait_for(
            lambda: (got := models.labels(config)).get("aiart.status.alerts") and got, 30,
            "the alert in the config's labels")
    finally:
        stop.set()
        sender.join()
    assert "AiartModelErrorRatio" in labels["aiart.status.alerts"].split(",")
    assert labels["aiart.status"] == "Ready"  # it still answers: the status keeps its meaning
    alert = webhook.firing(model, "AiartModelErrorRatio")[0]
    assert alert["labels"]["version"] == "1" and "requests fail" in alert["annotations"]["summary"]

    key = subprocess.run([sys.executable, "-m", "aiart.cli", "keys", "create", f"t{run_id}-mon",
                          "--role", "viewer"], capture_output=True, text=True, timeout=60)
    assert key.returncode == 0, key.stderr
    try:
        shown = subprocess.run([sys.executable, "-m", "aiart.cli", "status", model, "--url",
                                GATEWAY, "--key", key.stdout.strip()],
                               capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert "ALERTS" in shown.stdout and "AiartModelErrorRatio" in shown.stdout
    finally:
        subprocess.run([sys.executable, "-m", "aiart.cli", "keys", "revoke", f"t{run_id}-mon"],
                       capture_output=True, timeout=60)
