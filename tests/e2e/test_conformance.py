"""Conformance with the ecosystem's own Open Inference Protocol clients, through
Traefik, for every runtime: the kserve SDK's InferenceRESTClient (protocol v2),
open-inference-openapi's generated client, and tritonclient in JSON and binary
modes. (runtime: image serves an image of these; test_image_runtime.py.)"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import tritonclient.http as triton

# kserve parses the command line when it is imported (its model server's
# options): pytest's own (-m, -n) must not reach it.
with mock.patch.object(sys, "argv", sys.argv[:1]):
    from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from open_inference.openapi import InferenceRequest, RequestInput
from open_inference.openapi.client import OpenInferenceClient
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.e2e.conftest import GATEWAY, Models, triton_client

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
RUNTIMES = ["sklearn", "onnx", "h2o", "python"]
# runtime -> (input name, input datatype, first output name, expected first output)
CONTRACT = {
    "sklearn": ("input-0", "FP64", "predict", [0, 2]),
    "onnx": ("X", "FP32", "label", [0, 2]),
    "h2o": ("input-0", "FP64", "predict", ["setosa", "virginica"]),
    "python": ("input-0", "FP64", "predict", [10.2, 17.2]),
}
MOJO = Path(__file__).parents[1] / "fixtures" / "iris-h2o-gbm.zip"
CODE = b"def predict(inputs):\n    return next(iter(inputs.values())).sum(axis=-1)\n"


@pytest.fixture(scope="module")
def deployed(models: Models, iris_pickle: bytes) -> Iterator[dict[str, str]]:
    x, y = load_iris(return_X_y=True)
    onnx = to_onnx(LogisticRegression(max_iter=500, random_state=0).fit(x, y),
                   x[:1].astype(np.float32), options={"zipmap": False},
                   target_opset=17).SerializeToString()
    names = {}
    configs = {}
    artifacts = {"sklearn": iris_pickle, "onnx": onnx, "h2o": MOJO.read_bytes(), "python": CODE}
    for runtime, artifact in artifacts.items():
        model = models.name(f"conf-{runtime}")
        configs[runtime] = models.declare(model, "1", artifact, runtime=runtime)
        names[runtime] = model
    for config in configs.values():
        models.wait_status(config, "Ready", 420)
    yield names


def plain(values: list) -> list:
    return [v.decode() if isinstance(v, bytes) else v for v in values]


def same(got: list, expected: list) -> bool:
    # Labels compare exactly; sums of floats within rounding.
    return plain(got) == (pytest.approx(expected) if isinstance(expected[0], float) else expected)


@pytest.mark.parametrize("runtime", RUNTIMES)
async def test_kserve_rest_client_v2(deployed: dict[str, str], runtime: str) -> None:
    model = deployed[runtime]
    name, datatype, output, expected = CONTRACT[runtime]
    client = InferenceRESTClient(RESTConfig(protocol="v2", retries=2, timeout=30))
    # Server health is per model, at the model's base URL; model-scoped calls
    # work at the gateway's root too.
    assert await client.is_server_live(f"{GATEWAY}/models/{model}")
    assert await client.is_server_ready(f"{GATEWAY}/models/{model}")
    for base in (GATEWAY, f"{GATEWAY}/models/{model}"):
        assert await client.is_model_ready(base, model)
        tensor = InferInput(name=name, shape=[2, 4], datatype=datatype)
        tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float64 if datatype == "FP64"
                                            else np.float32), binary_data=False)
        result = await client.infer(base, InferRequest(model_name=model, infer_inputs=[tensor]),
                                    model_name=model)
        by_name = {o.name: o for o in result.outputs}
        assert same(by_name[output].as_numpy().tolist(), expected)
    await client.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_open_inference_openapi_client(deployed: dict[str, str], runtime: str) -> None:
    model = deployed[runtime]
    name, datatype, output, expected = CONTRACT[runtime]
    client = OpenInferenceClient(base_url=f"{GATEWAY}/models/{model}")
    client.check_server_liveness()
    client.check_server_readiness()
    client.check_model_readiness(model)
    client.check_model_version_readiness(model, "1")
    assert client.read_server_metadata().name == "aiart"
    metadata = client.read_model_metadata(model)
    assert metadata.name == model and metadata.inputs[0].name == name
    response = client.model_infer(model, request=InferenceRequest(inputs=[
        RequestInput(name=name, shape=[2, 4], datatype=datatype, data=ROWS)]))
    by_name = {o.name: o for o in response.outputs}
    assert same(by_name[output].data.__root__, expected)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("binary", [False, True])
def test_tritonclient(deployed: dict[str, str], runtime: str, binary: bool) -> None:
    model = deployed[runtime]
    name, datatype, output, expected = CONTRACT[runtime]
    client = triton_client(f"/models/{model}")
    assert client.is_server_ready() and client.is_model_ready(model)
    tensor = triton.InferInput(name, [2, 4], datatype)
    tensor.set_data_from_numpy(np.array(ROWS, dtype=np.float64 if datatype == "FP64"
                                        else np.float32), binary_data=binary)
    result = client.infer(model, [tensor], outputs=[
        triton.InferRequestedOutput(output, binary_data=binary)])
    assert same(result.as_numpy(output).tolist(), expected)
