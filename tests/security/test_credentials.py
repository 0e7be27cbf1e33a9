"""Credentials never reach a model: not the callers', not the operator's.

An ``image`` model that records every request's headers is deployed public
and closed, called anonymously and with keys, cookies and tokens, and handed
over to a new version (which makes the operator probe the model's current
route with its probe tokens). Then it tells what it saw: no credential, and
no alias of a header the gateway sets (``X.Aiart.Subject``), which a
CGI-style backend would read as the gateway's own.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest

from tests.e2e.conftest import Models, aiart, gateway_errors, gateway_lines, wait_for

# A server of the inference contract that keeps every request's headers and
# shows them at GET /seen. Standard library only: it runs on the base image.
RECORDER = r'''
import json, re
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN = []

class Handler(BaseHTTPRequestHandler):
    def answer(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        path = re.sub(r"/versions/[^/]+", "", self.path.split("?")[0])
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path == "/seen":
            return self.answer(200, SEEN)
        SEEN.append({"method": self.command, "path": self.path,
                     "headers": {k.lower(): v for k, v in self.headers.items()}})
        if path in ("/v2/health/live", "/v2/health/ready"):
            return self.answer(200, {"live": True, "ready": True})
        if path.endswith("/fail"):
            return self.answer(500, {"error": "failed on purpose"})
        match = re.fullmatch(r"/v2/models/([^/]+)(/ready|/infer)?", path)
        if not match:
            return self.answer(404, {"error": "not found"})
        if match.group(2) == "/ready":
            return self.answer(200, {"name": match.group(1), "ready": True})
        if match.group(2) == "/infer":
            if self.command != "POST" or not body.strip(b"{} "):
                return self.answer(400, {"error": "no inputs"})
            return self.answer(200, {"model_name": match.group(1), "outputs": []})
        return self.answer(200, {"name": match.group(1), "versions": [VERSION],
                                 "platform": "recorder", "inputs": [], "outputs": []})

    do_GET = do_POST = do_HEAD = handle_any

    def log_message(self, *args):
        pass

import os
VERSION = os.environ["AIART_MODEL_VERSION"]
ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
'''

CREDENTIALS = ("authorization", "x-api-key", "cookie", "proxy-authorization", "x-aiart-probe")


@pytest.fixture(scope="module")
def recorder_image(engine: docker.DockerClient, run_id: str) -> Iterator[str]:
    base = os.environ.get("AIART_BASE_IMAGE", "")
    assert base, "AIART_BASE_IMAGE is set by ./hack/test.sh"
    dockerfile = (f"FROM {base}\nCOPY recorder.py /recorder.py\nUSER 10001:10001\n"
                  'CMD ["python3", "/recorder.py"]\n').encode()
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", dockerfile), ("recorder.py", RECORDER.encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    tag = f"aiart-test/recorder:{run_id}"
    engine.images.build(fileobj=context, custom_context=True, tag=tag, pull=False,
                        labels={"aiart.test": run_id}, rm=True)
    yield tag
    try:
        engine.images.remove(tag, force=True)
    except docker.errors.APIError:
        pass


def recorder(model: str, version: str, image: str, auth: str) -> bytes:
    return (f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {model}, version: '{version}'}}"
            f"\nspec:\n  runtime: image\n  image: {image}\n  auth: {{mode: {auth}}}\n").encode()


def leaked(seen: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(r["method"], r["path"], h) for r in seen for h in CREDENTIALS if h in r["headers"]]


def as_cgi(name: str) -> str:
    """A header's name as CGI, WSGI, PHP and nginx backends read it: every
    character but a letter or a digit an underscore."""
    return "HTTP_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def aliases(seen: list[dict[str, Any]], header: str) -> list[tuple[str, str]]:
    """Headers a request reached the model with that such a backend would
    read as ``header``, other than ``header`` itself."""
    return [(r["path"], name) for r in seen for name in r["headers"]
            if as_cgi(name) == as_cgi(header) and name != header.lower()]


def test_no_credential_reaches_a_public_or_closed_model(
        models: Models, gateway: httpx.Client, recorder_image: str, run_id: str) -> None:
    public, closed = models.name("rec-public"), models.name("rec-closed")
    key_name = f"t{run_id}-recorder"
    key = aiart("keys", "create", key_name, "--model", closed)
    started = time.time()
    try:
        for model, auth in ((public, "none"), (closed, "apikey")):
            config = models.declare(model, "1", None,
                                    manifest_data=recorder(model, "1", recorder_image, auth))
            models.wait_status(config, "Ready", timeout=120)
        sent = {"X-API-Key": key, "Authorization": f"Bearer {key}",
                "Cookie": "session=secret", "Proxy-Authorization": "Basic c2VjcmV0",
                "X-Aiart-Probe": "forged", "X-Aiart-Subject": "apikey:admin"}
        # The gateway's own headers spelt as aliases (Go tells X_Aiart_Subject
        # from X-Aiart-Subject; a CGI-style backend does not, and may read
        # the caller's value for the gateway's).
        spoofed = {f"X{sep}Aiart{sep}{name}": value for sep in "_.~" for name, value in (
            ("Subject", "apikey:admin"), ("Gateway", "forged"))}
        body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]}
        for model in (public, closed):
            for headers in ({}, sent, {"X-API-Key": key}, {"Authorization": f"Bearer {key}"},
                            {"X-API-Key": key, **spoofed}):
                gateway.post(f"/v2/models/{model}/infer", json=body, headers=headers)
                gateway.get(f"/models/{model}/versions/1/v2/models/{model}", headers=headers)
        assert gateway.post(f"/v2/models/{closed}/infer", json=body,
                            headers={"X-API-Key": key}).status_code == 200
        # A model's failure is in the gateway's log of 5xx answers, which
        # keeps no header and no path (a key, a token, an OIDC code).
        failed = gateway.post(f"/v2/models/{closed}/fail?token=query-secret", json=body,
                              headers={**sent, "X-API-Key": key})
        assert failed.status_code == 500, failed.text
        logged = wait_for(lambda: [e for e in gateway_errors(models.engine, started)
                                   if f"aiart_{closed}_" in e.get("RouterName", "")], 60,
                          "the gateway to log the model's 500")
        assert logged[0]["DownstreamStatus"] == 500 and logged[0]["OriginStatus"] == 500
        gateway_log = "\n".join(gateway_lines(models.engine, started))
        for secret in (key, "query-secret", "session=secret", "/fail"):
            assert secret not in gateway_log, f"{secret!r} is in the gateway's log"
        # A second version of each: the hand-over makes the operator ask each
        # model's current route which version answers, with its probe tokens.
        for model, auth in ((public, "none"), (closed, "apikey")):
            config = models.declare(model, "2", None,
                                    manifest_data=recorder(model, "2", recorder_image, auth))
            models.wait_status(config, "Ready", timeout=120)
            wait_for(lambda m=model: gateway.get(  # type: ignore[misc]
                f"/v2/models/{m}", headers={"X-API-Key": key}).json().get("versions") == ["2"],
                60, f"{model} version 2 to take the route")

        for model in (public, closed):
            for version in ("1", "2"):
                answer = gateway.get(f"/models/{model}/versions/{version}/seen",
                                     headers={"X-API-Key": key})
                assert answer.status_code == 200, answer.text
                seen = answer.json()
                assert seen, f"{model} v{version} recorded nothing"
                assert not leaked(seen), leaked(seen)
                for header in ("X-Aiart-Subject", "X-Aiart-Gateway"):
                    assert not aliases(seen, header), aliases(seen, header)
            # Who called, as the gateway says: never what a caller claimed.
            subjects = {r["headers"].get("x-aiart-subject") for r in seen}
            assert "apikey:admin" not in subjects, subjects
            if model == public:
                assert subjects == {"anonymous"}, subjects
            # The operator's probes of the current route reached version 1.
            first = gateway.get(f"/models/{model}/versions/1/seen",
                                headers={"X-API-Key": key}).json()
            probes = [r for r in first if "aiohttp" in r["headers"].get("user-agent", "")
                      and r["path"] == f"/v2/models/{model}"]
            assert probes, f"the operator never probed {model}'s current route"
    finally:
        aiart("keys", "revoke", key_name)


def test_a_forged_or_foreign_probe_token_opens_nothing(
        models: Models, gateway: httpx.Client, recorder_image: str) -> None:
    from aiart.auth.access import probe_token

    model = models.name("rec-probe")
    config = models.declare(model, "1", None,
                            manifest_data=recorder(model, "1", recorder_image, "apikey"))
    models.wait_status(config, "Ready", timeout=120)
    for token in ("forged", probe_token(b"a key I made up", model, "1"),
                  json.dumps({"model": model})):
        answer = gateway.get(f"/v2/models/{model}", headers={"X-Aiart-Probe": token})
        assert answer.status_code == 401, (token, answer.status_code)
