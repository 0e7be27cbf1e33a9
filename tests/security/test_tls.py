"""Nothing a caller sends crosses the network in clear: the gateway serves
HTTPS with the certificate aiart was given (here the local CA's, made by
hack/stack.sh), and plain HTTP only redirects there, whatever the path,
without passing anything on to a model or the API."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import sys
from urllib.parse import urlsplit

import certifi
import httpx
import pytest

from tests.e2e.conftest import GATEWAY, LOCAL_CA, Models

pytestmark = pytest.mark.e2e
PLAIN = f"http://localhost:{os.environ.get('AIART_GATEWAY_PORT', '8080')}"
ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                   "data": [5.1, 3.5, 1.4, 0.2]}]}


def test_plain_http_only_redirects_to_https(models: Models, iris_pickle: bytes) -> None:
    assert GATEWAY.startswith("https://"), "./hack/test.sh deploys the gateway with TLS on"
    model = models.name("tls")
    models.wait_status(models.declare(model, "1", iris_pickle), "Ready")
    calls = [("POST", f"/v2/models/{model}/infer"), ("POST", f"/models/{model}/v2/models/"
             f"{model}/infer"), ("GET", "/api/v1/models"), ("GET", "/prometheus/api/v1/query"),
             ("GET", "/no/such/route")]
    with httpx.Client(base_url=PLAIN, timeout=10) as plain:
        for method, path in calls:
            answer = plain.request(method, path, json=ROW if method == "POST" else None,
                                   headers={"X-API-Key": "aiart_000000000000_x"})
            assert answer.status_code in (301, 308), (path, answer.status_code)
            assert answer.headers["location"] == f"{GATEWAY}{path}", answer.headers
            assert "outputs" not in answer.text
    # The same call over HTTPS is served (the model is public).
    with httpx.Client(base_url=GATEWAY, timeout=10) as secure:
        assert secure.post(f"/v2/models/{model}/infer", json=ROW).status_code == 200


def test_the_gateway_presents_the_certificate_it_was_given() -> None:
    url = urlsplit(GATEWAY)
    context = ssl.create_default_context(cafile=LOCAL_CA)
    with socket.create_connection((url.hostname, url.port or 443), timeout=5) as raw, \
            context.wrap_socket(raw, server_hostname=url.hostname) as tls:
        served = tls.getpeercert(binary_form=True)
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    given = os.environ.get("AIART_TLS_CERT") or os.path.join(os.path.dirname(LOCAL_CA),
                                                            "gateway.crt")
    with open(given) as pem:
        expected = ssl.PEM_cert_to_DER_cert(pem.read())
    assert hashlib.sha256(served).hexdigest() == hashlib.sha256(expected).hexdigest()
    # A client that trusts only the public CAs refuses it: the check is real.
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{GATEWAY}/v2/health/live",
                  verify=ssl.create_default_context(cafile=certifi.where()), timeout=5)


def test_the_cli_pointed_at_plain_http_says_where_aiart_answers() -> None:
    done = subprocess.run([sys.executable, "-m", "aiart.cli", "ls", "--url", PLAIN,
                           "--key", "aiart_000000000000_x"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1
    assert f"redirects to {GATEWAY}/api/v1/models" in done.stderr, done.stderr
