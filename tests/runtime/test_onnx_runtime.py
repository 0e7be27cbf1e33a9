"""The ONNX runtime: metadata from the model itself, the same contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from aiart_runtime.__main__ import load, main
from aiart_runtime.server import create_app
from skl2onnx import to_onnx
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("onnx")
    x, y = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=500).fit(x, y)
    onnx = to_onnx(estimator, x[:1].astype(np.float32), options={"zipmap": False},
                   target_opset=17)
    (path / "model.onnx").write_bytes(onnx.SerializeToString())
    (path / "model.json").write_text(json.dumps({
        "name": "iris", "version": "1", "runtime": "onnx", "artifact": "model.onnx"}))
    return path


@pytest.fixture(scope="module")
def client(model_dir: Path) -> TestClient:
    return TestClient(create_app(load(model_dir)))


def test_metadata_comes_from_the_model(client: TestClient) -> None:
    meta = client.get("/v2/models/iris").json()
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["inputs"] == [{"name": "X", "datatype": "FP32", "shape": [-1, 4]}]
    assert [(o["name"], o["datatype"]) for o in meta["outputs"]] == [
        ("label", "INT64"), ("probabilities", "FP32")]


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_infer(client: TestClient, datatype: str) -> None:
    response = client.post("/v2/models/iris/infer", json={"inputs": [
        {"name": "X", "shape": [2, 4], "datatype": datatype, "data": ROWS}]})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["label"]["data"] == [0, 2]
    assert outputs["probabilities"]["shape"] == [2, 3]


def test_predict_rows_and_errors(client: TestClient) -> None:
    assert client.post("/predict", json={"instances": ROWS}).json() == {"predictions": [0, 2]}
    bad = client.post("/v2/models/iris/infer", json={"inputs": [
        {"name": "X", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]})
    assert bad.status_code == 400 and "the model takes [-1, 4]" in bad.json()["error"]
    bad = client.post("/v2/models/iris/infer", json={"inputs": [
        {"name": "X", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}],
        "outputs": [{"name": "nope"}]})
    assert bad.status_code == 400 and "no output 'nope'" in bad.json()["error"]


def test_a_file_that_is_not_onnx_does_not_load(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "model.json").write_text((model_dir / "model.json").read_text())
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07garbage that is no protobuf")
    assert main(["check", str(tmp_path)]) == 1
    assert main(["check", str(model_dir)]) == 0
