"""The h2o runtime: a real MOJO (exported by H2O 3.46.0.9) scored with H2O's
genmodel classes in a JVM inside the server. The jar comes from the h2o wheel
(hack/images.sh fetch_genmodel_jar, which ./hack/test.sh runs)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from aiart_runtime.__main__ import load
from aiart_runtime.server import create_app
from starlette.testclient import TestClient

MOJO = Path(__file__).parents[1] / "fixtures" / "iris-h2o-gbm.zip"
JAR = os.environ.get("AIART_GENMODEL_JAR", "")
ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    if not Path(JAR).is_file():
        pytest.fail("AIART_GENMODEL_JAR must name h2o-genmodel.jar: run ./hack/test.sh")
    path = tmp_path_factory.mktemp("h2o")
    shutil.copy(MOJO, path / "model.zip")
    (path / "model.json").write_text(json.dumps({
        "name": "iris", "version": "1", "runtime": "h2o", "artifact": "model.zip"}))
    return TestClient(create_app(load(path)))


def test_metadata_from_the_mojo(client: TestClient) -> None:
    meta = client.get("/v2/models/iris").json()
    assert meta["platform"] == "h2o_mojo"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [{"name": "predict", "datatype": "BYTES", "shape": [-1]},
                               {"name": "probabilities", "datatype": "FP64", "shape": [-1, 3]}]


def test_infer_matrix_columns_and_rows(client: TestClient) -> None:
    response = client.post("/v2/models/iris/infer", json={"inputs": [
        {"name": "x", "shape": [2, 4], "datatype": "FP64", "data": ROWS}]})
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    assert outputs["predict"]["data"] == ["setosa", "virginica"]
    assert outputs["probabilities"]["shape"] == [2, 3]
    columns = client.post("/v2/models/iris/infer", json={"inputs": [
        {"name": name, "shape": [1], "datatype": "FP64", "data": [value]}
        for name, value in zip(["sepal_length", "sepal_width", "petal_length", "petal_width"],
                               ROWS[1], strict=True)], "outputs": [{"name": "predict"}]})
    assert columns.json()["outputs"][0]["data"] == ["virginica"]
    assert client.post("/predict", json={"instances": ROWS}).json() == {
        "predictions": ["setosa", "virginica"]}
    bad = client.post("/v2/models/iris/infer", json={"inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]})
    assert bad.status_code == 400 and "[N, 4]" in bad.json()["error"]
