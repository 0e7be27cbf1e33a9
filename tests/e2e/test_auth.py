"""Model endpoints closed by default, through the real Traefik and the auth
service: no key 401, a key for another model 403, the right key 200, a
revoked key 401 again within seconds; rate limits per model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import docker
import httpx
import pytest
from aiart.core.render import traefik_name

from tests.e2e.conftest import ENTRYPOINTS, STACK, Models, aiart, wait_for
from tests.oidc import ISSUER, Signer, serve_jwks

pytestmark = pytest.mark.e2e
ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                   "data": [5.1, 3.5, 1.4, 0.2]}]}


@pytest.fixture(scope="module")
def key_names(run_id: str) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    for name in names:
        subprocess.run([sys.executable, "-m", "aiart.cli", "keys", "revoke", name],
                       capture_output=True, timeout=60)


def test_a_model_is_closed_until_a_key_opens_it(
        models: Models, iris_pickle: bytes, gateway: httpx.Client, key_names: list[str],
        run_id: str) -> None:
    model = models.name("closed")
    config = models.declare(model, "1", iris_pickle, auth="{mode: apikey}")
    # Ready means the operator's own probes passed the guard with its key.
    models.wait_status(config, "Ready")
    url = f"/v2/models/{model}/infer"

    anonymous = gateway.post(url, json=ROW)
    assert anonymous.status_code == 401
    assert "needs an aiart API key" in anonymous.json()["error"]
    assert gateway.get(f"/v2/models/{model}/ready").status_code == 200  # health stays open

    key_names += [f"t{run_id}-user", f"t{run_id}-other"]
    key = aiart("keys", "create", f"t{run_id}-user", "--model", model)
    other = aiart("keys", "create", f"t{run_id}-other", "--model", f"{model}-else")
    assert key not in aiart("keys", "ls")  # only digests are kept

    def status_with(k: str) -> int:
        return gateway.post(url, json=ROW, headers={"X-API-Key": k}).status_code

    # The auth service reads new keys within about a second.
    wait_for(lambda: status_with(key) == 200, 10, "the new key to open the model")
    assert gateway.post(f"/models/{model}/predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]},
                        headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert status_with(other) == 403
    assert status_with(key[:-2] + "xx") == 401

    aiart("keys", "revoke", f"t{run_id}-user")
    revoked_at = time.monotonic()
    wait_for(lambda: status_with(key) == 401, 10, "the revoked key to be refused")
    seconds = time.monotonic() - revoked_at
    print(f"revoked key refused after {seconds:.2f} s")
    assert seconds < 5


def test_a_rate_limit_answers_429_beyond_its_rate(
        models: Models, iris_pickle: bytes, gateway: httpx.Client) -> None:
    model = models.name("limited")
    config = models.declare(model, "1", iris_pickle, rateLimit="{average: 2, burst: 2}")
    models.wait_status(config, "Ready")
    # Twelve callers at once: a loaded CI machine answered twelve calls one
    # after another so slowly (4 a second) that the rate let 8 of them pass.
    # What passes is bounded by the time the calls took: the burst, and two
    # a second after it (one more for a second begun).
    started = time.monotonic()
    with ThreadPoolExecutor(12) as pool:
        codes = list(pool.map(
            lambda _: gateway.post(f"/v2/models/{model}/infer", json=ROW).status_code,
            range(12)))
    took = time.monotonic() - started
    assert set(codes) <= {200, 429}, codes
    assert 2 <= codes.count(200) <= 2 + 2 * took + 1 and codes.count(429) >= 1, (codes, took)


ECHO = """
import json, uvicorn
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
    body = json.dumps(headers).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
uvicorn.run(app, host="0.0.0.0", port=8080, log_level="warning")
"""


def test_the_model_never_sees_the_credential(
        models: Models, iris_pickle: bytes, gateway: httpx.Client, key_names: list[str],
        run_id: str, operator_service) -> None:  # type: ignore[no-untyped-def]
    # A server that echoes the headers it gets, behind the same guard
    # (middlewares) that aiart put on a closed model's routes.
    model = models.name("guarded")
    models.wait_status(models.declare(model, "1", iris_pickle, auth="{mode: apikey}"), "Ready")
    svc = traefik_name(model, "1")
    image = operator_service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]
    echo = models.engine.services.create(
        image, ["/opt/aiart/bin/python", "-c", ECHO], name=f"t{run_id}-echo",
        networks=["aiart-models"], endpoint_spec=docker.types.EndpointSpec(mode="dnsrr"),
        labels={"aiart.test": run_id, "traefik.enable": "true",
                "traefik.swarm.network": "aiart-models",
                f"traefik.http.routers.t{run_id}-echo.rule": f"Path(`/t{run_id}-echo`)",
                f"traefik.http.routers.t{run_id}-echo.entrypoints": ENTRYPOINTS,
                f"traefik.http.routers.t{run_id}-echo.middlewares":
                    f"{svc}_auth@swarm,{svc}_nocred@swarm",
                f"traefik.http.services.t{run_id}-echo.loadbalancer.server.port": "8080"})
    try:
        key_names.append(f"t{run_id}-echo")
        key = aiart("keys", "create", f"t{run_id}-echo", "--model", model)
        seen = wait_for(lambda: (r := gateway.get(f"/t{run_id}-echo", headers={
            "X-API-Key": key, "Authorization": f"Bearer {key}"})).status_code == 200 and r.json(),
            60, "the echo server behind the guard")
        assert "authorization" not in seen and "x-api-key" not in seen
        assert key not in json.dumps(seen)
        assert seen["x-aiart-subject"] == f"apikey:t{run_id}-echo"
        assert gateway.get(f"/t{run_id}-echo").status_code == 401
    finally:
        echo.remove()


@pytest.mark.serial  # restarts the auth service, which every closed model needs
def test_oidc_tokens_through_the_gateway(
        models: Models, iris_pickle: bytes, gateway: httpx.Client) -> None:
    """The auth service pointed at a JWKS that this test serves, as a
    Keycloak realm would publish it; tokens signed by the test's key pair."""
    signer = Signer("e2e")
    engine = models.engine
    # Where the auth service's containers reach this host.
    host = engine.networks.get("docker_gwbridge").attrs["IPAM"]["Config"][0]["Gateway"]
    auth = engine.services.get(f"{STACK}_auth")
    spec = auth.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]
    before = list(spec.get("Env") or [])
    with serve_jwks(signer, "0.0.0.0") as port:
        kept = [e for e in before if not e.startswith("AIART_OIDC_")]
        auth.update(env=[*kept, f"AIART_OIDC_ISSUER={ISSUER}", "AIART_OIDC_AUDIENCE=aiart",
                         f"AIART_OIDC_JWKS_URL=http://{host}:{port}/certs"])
        try:
            model = models.name("oidc")
            config = models.declare(model, "1", iris_pickle,
                                    auth="{mode: oidc, scopes: [models:predict]}")
            models.wait_status(config, "Ready")
            url = f"/v2/models/{model}/infer"

            def status(token: str | None) -> int:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                return gateway.post(url, json=ROW, headers=headers).status_code

            good = signer.token(scope="openid models:predict")
            wait_for(lambda: status(good) == 200, 90, "the auth service to take tokens")
            assert status(None) == 401
            assert status(signer.token(scope="openid")) == 403
            assert status(signer.token(scope="models:predict", exp=time.time() - 600)) == 401
            assert status(Signer("e2e").token(scope="models:predict")) == 401  # forged
        finally:
            auth.reload()
            auth.update(env=before)
