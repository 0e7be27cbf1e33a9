"""The Open Inference Protocol over gRPC through the real gateway: Traefik
takes HTTP/2 over TLS on the users' entrypoint and routes each call by its
``aiart-model`` (and ``aiart-version``) metadata to the model's gRPC port.
Called with tritonclient.grpc (in a child process: tests/triton_grpc.py)
and with a client generated from oip.proto;
a closed model's key check, the version pin and the errors work as on REST."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests import triton_grpc
from tests.e2e.conftest import GATEWAY, LOCAL_CA, Models, aiart, wait_for

pytestmark = pytest.mark.e2e
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
OIP = Path(__file__).parents[2] / "runtimes" / "aiart_runtime" / "oip"
SCHEME, _, TARGET = GATEWAY.partition("://")


@pytest.fixture(scope="module")
def served(models: Models, iris_pickle: bytes) -> tuple[str, str]:
    public, closed = models.name("grpc"), models.name("grpc-closed")
    configs = [models.declare(public, "1", iris_pickle),
               models.declare(closed, "1", iris_pickle, auth="{mode: apikey}")]
    for config in configs:
        models.wait_status(config, "Ready")
    return public, closed


def triton(batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """tritonclient.grpc's answers through the gateway (in a child process:
    tests/triton_grpc.py says why)."""
    return triton_grpc.calls(TARGET, batch, LOCAL_CA if SCHEME == "https" else "")


def infer(model: str, **headers: str) -> dict[str, Any]:
    return {"model": model, "rows": ROWS, "shape": [2, 4], "headers": headers}


def test_tritonclient_through_the_gateway(served: tuple[str, str], gateway: httpx.Client) -> None:
    public, _ = served
    # The routes come with the model's (one set of labels), so Ready means routed.
    plain, meta, pinned, other_version, unnamed, bad = triton([
        infer(public, **{"aiart-model": public}),
        {"model": public, "metadata": True, "headers": {"aiart-model": public}},
        infer(public, **{"aiart-model": public, "aiart-version": "1"}),
        infer(public, **{"aiart-model": public, "aiart-version": "9"}),
        infer(public),  # no model named in the metadata: no route takes the call
        {"model": public, "rows": [[1.0, 2.0, 3.0]], "shape": [1, 3],
         "headers": {"aiart-model": public}},
    ])
    assert plain["predict"] == [0, 2], plain
    rest = gateway.post(f"/v2/models/{public}/infer", json={"inputs": [
        {"name": "input-0", "shape": [2, 4], "datatype": "FP64", "data": ROWS}]}).json()
    np.testing.assert_allclose(np.asarray(rest["outputs"][1]["data"]).reshape(2, 3),
                               plain["proba"], rtol=1e-9)
    assert (meta["name"], meta["versions"]) == (public, ["1"]), meta
    assert pinned["version"] == "1", pinned
    assert "NOT_FOUND" in other_version["error"] and f"asks for {public}:9" in other_version[
        "error"], other_version
    assert "UNIMPLEMENTED" in unnamed["error"], unnamed
    assert "INVALID_ARGUMENT" in bad["error"], bad


def test_a_closed_model_takes_grpc_calls_with_a_key_only(
        served: tuple[str, str], run_id: str) -> None:
    _, closed = served
    (anonymous,) = triton([infer(closed, **{"aiart-model": closed})])
    assert "UNAUTHENTICATED" in anonymous.get("error", ""), anonymous
    name = f"t{run_id}-grpc"
    key = aiart("keys", "create", name, "--model", closed)
    try:
        def answered() -> list[int] | None:
            (answer,) = triton([infer(closed, **{"aiart-model": closed,
                                                 "authorization": f"Bearer {key}"})])
            return answer.get("predict")

        assert wait_for(answered, 20, "the new key to open the model over gRPC") == [0, 2]
        (wrong,) = triton([infer(closed, **{"aiart-model": closed,
                                            "x-api-key": key[:-2] + "xx"})])
        assert "UNAUTHENTICATED" in wrong.get("error", ""), wrong
    finally:
        aiart("keys", "revoke", name)


GENERATED_CLIENT = """
import json, sys, grpc, oip_pb2, oip_pb2_grpc
target, model, ca = sys.argv[1:4]
channel = (grpc.secure_channel(target, grpc.ssl_channel_credentials(open(ca, "rb").read()))
           if ca else grpc.insecure_channel(target))
stub = oip_pb2_grpc.GRPCInferenceServiceStub(channel)
request = oip_pb2.ModelInferRequest(model_name=model, id="generated")
tensor = request.inputs.add(name="input-0", datatype="FP64", shape=[2, 4])
tensor.contents.fp64_contents.extend(json.loads(sys.argv[4]))
answer = stub.ModelInfer(request, metadata=[("aiart-model", model)], timeout=10)
ready = stub.ModelReady(oip_pb2.ModelReadyRequest(name=model), metadata=[("aiart-model", model)])
print(json.dumps({"id": answer.id, "ready": ready.ready,
                  "predict": list(answer.outputs[0].contents.int64_contents)}))
"""


def test_a_client_generated_from_oip_proto(served: tuple[str, str], tmp_path: Path) -> None:
    public, _ = served
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{OIP}",
                    f"--python_out={tmp_path}", f"--grpc_python_out={tmp_path}", "oip.proto"],
                   check=True)
    (tmp_path / "client.py").write_text(GENERATED_CLIENT)
    done = subprocess.run(
        [sys.executable, str(tmp_path / "client.py"), TARGET, public,
         LOCAL_CA if SCHEME == "https" else "", json.dumps([x for row in ROWS for x in row])],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"id": "generated", "ready": True, "predict": [0, 2]}
