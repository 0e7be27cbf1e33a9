"""Prometheus and Alertmanager are reached through the gateway with their
password, and nowhere else.

An anonymous client of the gateway, or one with a wrong password, can
neither read metrics nor post or silence alerts; nothing of theirs is
published on the host. (From inside a model, Prometheus asks for the
password too: tests/security/test_model_network.py.)"""

from __future__ import annotations

import datetime

import docker
import httpx
import pytest

from tests.e2e.conftest import GATEWAY, STACK, stack_auth

pytestmark = pytest.mark.e2e

READS = ["/prometheus/api/v1/query?query=up", "/prometheus/api/v1/targets",
         "/prometheus/-/ready", "/alertmanager/api/v2/alerts", "/alertmanager/api/v2/silences"]


def _fake_alert() -> list[dict[str, object]]:
    now = datetime.datetime.now(datetime.UTC)
    return [{"labels": {"alertname": "AiartModelErrorRatio", "model": "forged", "version": "1"},
             "startsAt": now.isoformat(),
             "endsAt": (now + datetime.timedelta(minutes=5)).isoformat()}]


def test_anonymous_and_wrong_password_are_refused_on_every_monitoring_path() -> None:
    user, password = stack_auth("monitoring")
    with httpx.Client(base_url=GATEWAY, timeout=10) as client:
        for auth in (None, (user, "not-" + password), ("admin", password)):
            for path in READS:
                answer = client.get(path, auth=auth)
                assert answer.status_code == 401, (path, auth and auth[0], answer.status_code)
            forged = client.post("/alertmanager/api/v2/alerts", json=_fake_alert(), auth=auth)
            assert forged.status_code == 401, forged.text
        # The password opens them, and no forged alert got in.
        for path in READS:
            assert client.get(path, auth=(user, password)).status_code == 200, path
        alerts = client.get("/alertmanager/api/v2/alerts", auth=(user, password)).json()
        assert not [a for a in alerts if a["labels"].get("model") == "forged"]


def test_prometheus_and_alertmanager_publish_no_port_on_the_host(
        engine: docker.DockerClient) -> None:
    for name in ("prometheus", "alertmanager"):
        service = engine.services.get(f"{STACK}_{name}")
        ports = (service.attrs["Spec"].get("EndpointSpec") or {}).get("Ports") or []
        assert ports == [], (name, ports)
