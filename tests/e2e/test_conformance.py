"""Conformance with the ecosystem's own Open Inference Protocol clients, through
Traefik, for every runtime: the kserve SDK's InferenceRESTClient (protocol v2)
and open-inference-openapi's generated client. (tritonclient is exercised in
test_model_lifecycle.py and test_onnx.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from open_inference.openapi import InferenceRequest, RequestInput
from open_inference.openapi.client import OpenInferenceClient
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.e2e.conftest import GATEWAY, Models

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
# runtime -> (input name, input datatype, first output name)
CONTRACT = {"sklearn": ("input-0", "FP64", "predict"), "onnx": ("X", "FP32", "label")}


@pytest.fixture(scope="module")
def deployed(models: Models, iris_pickle: bytes) -> Iterator[dict[str, str]]:
    x, y = load_iris(return_X_y=True)
    onnx = to_onnx(LogisticRegression(max_iter=500, random_state=0).fit(x, y),
                   x[:1].astype(np.float32), options={"zipmap": False},
                   target_opset=17).SerializeToString()
    names = {}
    for runtime, artifact in (("sklearn", iris_pickle), ("onnx", onnx)):
        model = models.name(f"conf-{runtime}")
        models.wait_status(models.declare(model, "1", artifact, runtime=runtime), "Ready", 300)
        names[runtime] = model
    yield names


@pytest.mark.parametrize("runtime", ["sklearn", "onnx"])
async def test_kserve_rest_client_v2(deployed: dict[str, str], runtime: str) -> None:
    model = deployed[runtime]
    name, datatype, output = CONTRACT[runtime]
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
        assert by_name[output].as_numpy().tolist() == [0, 2]
    await client.close()


@pytest.mark.parametrize("runtime", ["sklearn", "onnx"])
def test_open_inference_openapi_client(deployed: dict[str, str], runtime: str) -> None:
    model = deployed[runtime]
    name, datatype, output = CONTRACT[runtime]
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
    assert by_name[output].data.__root__ == [0, 2]
