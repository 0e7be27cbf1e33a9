"""An ONNX model (converted with skl2onnx) behind the same contract, through Traefik."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

from tests.e2e.conftest import Models, triton_client

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)


@pytest.fixture(scope="module")
def iris_onnx() -> bytes:
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=500, random_state=0).fit(x, y)
    return to_onnx(model, x[:1].astype(np.float32), options={"zipmap": False},
                   target_opset=17).SerializeToString()


def test_onnx_model_through_the_gateway(models: Models, iris_onnx: bytes,
                                        gateway: httpx.Client) -> None:
    model = models.name("onnx")
    config = models.declare(model, "1", iris_onnx, runtime="onnx")
    labels = models.wait_status(config, "Ready", timeout=300)
    assert "/aiart/" in labels["aiart.status.image"]
    meta = gateway.get(f"/v2/models/{model}").json()
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]

    client = triton_client(f"/models/{model}")
    for binary in (False, True):
        tensor = triton.InferInput("X", [2, 4], "FP32")
        tensor.set_data_from_numpy(ROWS, binary_data=binary)
        result = client.infer(model, [tensor], outputs=[
            triton.InferRequestedOutput("label", binary_data=binary),
            triton.InferRequestedOutput("probabilities", binary_data=binary)])
        assert result.as_numpy("label").tolist() == [0, 2]
        assert result.as_numpy("probabilities").shape == (2, 3)
    rows = gateway.post(f"/models/{model}/predict", json={"instances": ROWS.tolist()})
    assert rows.json() == {"predictions": [0, 2]}
