"""Callers' credentials do not cross aiart's network in clear.

The gateway hands every caller's key or token to the auth service
(forwardAuth) and to the API, which may run on another node. Against the
real stack, from a container on aiart's internal network (the operator's,
where a neighbour of those services would be): both speak HTTPS only, with
a certificate of aiart's internal CA for their names; a plain HTTP request
gets no answer. Through the gateway, which checks that certificate, closed
models and the API answer as ever (tests/e2e)."""

from __future__ import annotations

import json
from pathlib import Path

import docker

from tests.e2e.conftest import INTERNAL_CA, STACK

PROBE = r"""
import http.client, json, ssl, sys
ca, targets = sys.argv[1], json.loads(sys.argv[2])
out = {}
for name, path in targets:
    try:
        plain = http.client.HTTPConnection(name, 8000, timeout=5)
        plain.request("GET", path)
        out[f"http://{name}"] = plain.getresponse().status
    except Exception as exc:
        out[f"http://{name}"] = type(exc).__name__
    for trust, context in (("internal CA", ssl.create_default_context(cadata=ca)),
                           ("system CAs", ssl.create_default_context())):
        try:
            tls = http.client.HTTPSConnection(name, 8000, timeout=5, context=context)
            tls.request("GET", path)
            out[f"https://{name} {trust}"] = tls.getresponse().status
        except Exception as exc:
            out[f"https://{name} {trust}"] = type(exc).__name__
print(json.dumps(out))
"""


def test_the_auth_service_and_the_api_speak_https_only(engine: docker.DockerClient) -> None:
    operator = engine.containers.list(
        filters={"label": f"com.docker.swarm.service.name={STACK}_operator"})
    assert operator, "no operator container on this node"
    targets = [("auth", "/health"), ("api", "/api/v1/models"),
               (f"{STACK}_auth", "/health")]
    result = operator[0].exec_run(["/opt/aiart/bin/python", "-c", PROBE,
                                   Path(INTERNAL_CA).read_text(), json.dumps(targets)])
    assert result.exit_code == 0, result.output
    seen = json.loads(result.output.decode().strip().splitlines()[-1])
    for name, _ in targets:
        # Plain HTTP: the server answers with a TLS alert, never an HTTP status.
        assert not isinstance(seen[f"http://{name}"], int), seen
        # HTTPS verified against the internal CA, for the service's name.
        assert isinstance(seen[f"https://{name} internal CA"], int), seen
        # Not a certificate any public CA vouches for: only aiart's own.
        assert seen[f"https://{name} system CAs"] == "SSLCertVerificationError", seen
    assert seen["https://auth internal CA"] == 200, seen
    assert seen["https://api internal CA"] == 401, seen  # no key: refused, over TLS
