"""A model reaches nothing but its own answers.

From inside a running model's container (the code inside a model), against
the real stack: a neighbour model answers inference only to the gateway
(403 when called directly), the operator, the auth service, the API and
Alertmanager and the object store are on a network no model is on (models
reach the store through the store gateway, tests/security/test_store_scope.py),
and Prometheus, which is on
the model network, asks for its password. The same holds over gRPC. The
gateway-only check itself
is also tested on the model server app, with tokens given."""

from __future__ import annotations

import json
from pathlib import Path

import docker
import httpx
from aiart.auth.access import gateway_token
from aiart_runtime.__main__ import load
from aiart_runtime.gateway_only import GatewayOnly
from aiart_runtime.server import create_app

from tests.e2e.conftest import STACK, Models
from tests.fakes import iris_model_dir

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                   "data": [5.1, 3.5, 1.4, 0.2]}]}


async def test_only_requests_through_the_gateway_may_call_a_model(tmp_path: Path) -> None:
    app = create_app(load(iris_model_dir(tmp_path)), gate=GatewayOnly(
        gateway_token(b"k", "iris", "1")))

    async def call(client: str, method: str, path: str, token: str | None = None) -> int:
        transport = httpx.ASGITransport(app=app, client=(client, 40000))
        headers = {"X-Aiart-Gateway": token} if token is not None else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://m") as http:
            answer = await http.request(method, path, json=ROW if method == "POST" else None,
                                        headers=headers)
            return answer.status_code

    assert await call("10.0.1.7", "POST", "/v2/models/iris/infer",
                      gateway_token(b"k", "iris", "1")) == 200
    # Another model's token, another version's, another key's, none: refused.
    for token in (gateway_token(b"k", "wine", "1"), gateway_token(b"k", "iris", "2"),
                  gateway_token(b"other", "iris", "1"), "", None):
        for path in ("/v2/models/iris/infer", "/predict", "/v2/models/iris", "/v2"):
            method = "POST" if path.endswith(("infer", "predict")) else "GET"
            assert await call("10.0.1.7", method, path, token) == 403, (token, path)
    # During a rollout the route to both versions hands both tokens; a list
    # without this version's own (or a near miss of it) is refused all the same.
    own, other = gateway_token(b"k", "iris", "1"), gateway_token(b"k", "iris", "2")
    assert await call("10.0.1.7", "POST", "/v2/models/iris/infer", f"{other},{own}") == 200
    for token in (f"{other},{other}", f"{own[:-1]},{other}", f"{own}x", ","):
        assert await call("10.0.1.7", "POST", "/v2/models/iris/infer", token) == 403, token
    # Open to anyone: health, readiness, metrics; and the container itself.
    for path in ("/v2/health/live", "/v2/health/ready", "/v2/models/iris/ready", "/metrics"):
        assert await call("10.0.1.23", "GET", path) == 200, path
    assert await call("127.0.0.1", "POST", "/v2/models/iris/infer") == 200


PROBE = r"""
import json, os, socket, sys, urllib.request, urllib.error
out = {}
for name, port in json.loads(sys.argv[1]):
    try:
        socket.create_connection((name, port), timeout=3).close()
        out[name] = "connected"
    except OSError as exc:
        out[name] = type(exc).__name__
url, body = sys.argv[2], sys.argv[3].encode()
# Directly, then with this model's own gateway token (its server's setting).
own = {"X-Aiart-Gateway": os.environ.get("AIART_GATEWAY_TOKEN", "")}
for key, extra in (("direct", {}), ("own-token", own)):
    try:
        answer = urllib.request.urlopen(urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json", **extra}), timeout=5)
        out[key] = answer.status
    except urllib.error.HTTPError as exc:
        out[key] = exc.code
    except OSError as exc:
        out[key] = type(exc).__name__
out["has-token"] = bool(own["X-Aiart-Gateway"])
# The same over gRPC (the model server's other port), directly and with the
# model's own token.
import grpc
from aiart_runtime.oip import messages as pb
request = pb.ModelInferRequest(model_name=sys.argv[6])
tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[1, 4])
tensor.contents.fp64_contents.extend([5.1, 3.5, 1.4, 0.2])
with grpc.insecure_channel(sys.argv[5]) as channel:
    rpc = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer",
                              request_serializer=pb.ModelInferRequest.SerializeToString,
                              response_deserializer=pb.ModelInferResponse.FromString)
    for key, metadata in (("grpc-direct", ()),
                          ("grpc-own-token", (("x-aiart-gateway", own["X-Aiart-Gateway"]),))):
        try:
            rpc(request, metadata=metadata, timeout=5)
            out[key] = "OK"
        except grpc.RpcError as exc:
            out[key] = exc.code().name
for url in json.loads(sys.argv[4]):
    try:
        out[url] = urllib.request.urlopen(url, timeout=5).status
    except urllib.error.HTTPError as exc:
        out[url] = exc.code
    except OSError as exc:
        out[url] = type(exc).__name__
print(json.dumps(out))
"""


def _container(engine: docker.DockerClient, model: str) -> docker.models.containers.Container:
    found = engine.containers.list(filters={"label": f"com.docker.swarm.service.name="
                                                      f"aiart-{model}-1"})
    assert found, f"no running container of {model} on this node"
    return found[0]


def test_from_inside_a_model_only_the_gateway_path_exists(
        models: Models, iris_pickle: bytes, gateway: httpx.Client) -> None:
    attacker, victim = models.name("net-attacker"), models.name("net-victim")
    for model in (attacker, victim):
        models.wait_status(models.declare(model, "1", iris_pickle), "Ready")
    engine = models.engine
    networks = _container(engine, victim).attrs["NetworkSettings"]["Networks"]
    victim_ip = networks["aiart-models"]["IPAddress"]
    targets = [("auth", 8000), ("api", 8000), ("alertmanager", 9093), ("operator", 9100),
               (f"{STACK}_auth", 8000), (f"{STACK}_operator", 9100), ("store", 9000),
               (f"{STACK}_store", 9000), ("broker", 1883), (f"{STACK}_broker", 1883),
               ("traefik", 80)]
    # Prometheus shares the model network (it scrapes models), and so does
    # the gateway's metrics port: both ask for the monitoring password.
    asks = ["http://prometheus:9090/api/v1/query?query=up",
            "http://prometheus:9090/api/v1/targets", "http://traefik:8082/metrics",
            "http://traefik:8082/api/rawdata"]
    code = _container(engine, attacker).exec_run(
        ["/opt/aiart/bin/python", "-c", PROBE, json.dumps(targets),
         f"http://{victim_ip}:8080/v2/models/{victim}/infer", json.dumps(ROW), json.dumps(asks),
         f"{victim_ip}:8081", victim])
    assert code.exit_code == 0, code.output
    seen = json.loads(code.output.decode().strip().splitlines()[-1])
    for name, _ in targets[:-1]:
        assert seen[name] != "connected", (name, seen)
    assert seen["traefik"] == "connected"  # the gateway: the one way in
    assert seen["direct"] == 403, seen
    # Its own server's token does not open a neighbour.
    assert seen["has-token"] and seen["own-token"] == 403, seen
    assert seen["grpc-direct"] == seen["grpc-own-token"] == "PERMISSION_DENIED", seen
    assert seen[asks[0]] == seen[asks[1]] == seen[asks[2]] == 401, seen
    assert seen[asks[3]] == 404, seen
    # Through the gateway the victim answers as ever, whatever token a
    # caller sends (the route replaces it).
    assert gateway.post(f"/v2/models/{victim}/infer", json=ROW).status_code == 200
    assert gateway.post(f"/v2/models/{victim}/infer", json=ROW,
                        headers={"X-Aiart-Gateway": "forged"}).status_code == 200


WAKE = r"""
import json, os, sys, time, urllib.request, urllib.error
model = sys.argv[1]
out = {}
# The activator, called as if the gateway held a request for the sleeping
# model: with this model's own gateway token, and with none.
for key, token in (("own-token", os.environ.get("AIART_GATEWAY_TOKEN", "")), ("none", "")):
    started = time.monotonic()
    try:
        answer = urllib.request.urlopen(urllib.request.Request(
            f"http://activator:8090/v2/models/{model}/infer", data=b"{}", headers={
                "X-Aiart-Activate": f"{model}/1/3", "X-Aiart-Gateway": token}), timeout=10)
        out[key] = answer.status
    except urllib.error.HTTPError as exc:
        out[key] = exc.code
    except OSError as exc:
        out[key] = type(exc).__name__
# The operator's wake call itself (its traffic port): not on this network.
try:
    urllib.request.urlopen(urllib.request.Request(
        f"http://operator:9101/wake/{model}/1", data=b"", method="POST"), timeout=3)
    out["operator"] = "answered"
except urllib.error.HTTPError as exc:
    out["operator"] = exc.code
except OSError as exc:
    out["operator"] = type(exc).__name__
print(json.dumps(out))
"""


def test_a_neighbour_cannot_wake_a_sleeping_model(models: Models, iris_pickle: bytes) -> None:
    """The activator is on the model network; a model's code that calls it
    as the gateway would, for a sleeping neighbour, wakes nothing: the
    operator wakes a version only for its own gateway token, which only its
    routes hand out."""
    from tests.e2e.conftest import wait_for
    from tests.e2e.test_scaling import asleep

    # The attacker of the test above, if it ran (one deployment less).
    attacker, sleeper = models.name("net-attacker"), models.name("wake-victim")
    if not models.services(attacker):
        models.wait_status(models.declare(attacker, "1", iris_pickle), "Ready")
    sleeper_config = models.declare(sleeper, "1", iris_pickle, scaling=(
        "{minReplicas: 0, maxReplicas: 1, stableWindow: 6s, panicWindow: 4s, "
        "scaleToZeroAfter: 5s}"))
    models.wait_status(sleeper_config, "Ready")
    wait_for(lambda: asleep(models, sleeper_config, sleeper), 90, f"{sleeper} to sleep")
    code = _container(models.engine, attacker).exec_run(
        ["/opt/aiart/bin/python", "-c", WAKE, sleeper])
    assert code.exit_code == 0, code.output
    seen = json.loads(code.output.decode().strip().splitlines()[-1])
    # Held for its 3 s, refused a wake each time, then 503: never woken.
    assert seen["own-token"] == seen["none"] == 503, seen
    assert seen["operator"] != "answered" and not isinstance(seen["operator"], int), seen
    labels = models.labels(sleeper_config)
    assert labels["aiart.scale.replicas"] == "0", labels
    assert asleep(models, sleeper_config, sleeper)
