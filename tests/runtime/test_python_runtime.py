"""The python runtime: user code with load()/predict(), or a class."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from aiart_runtime.__main__ import load, main
from aiart_runtime.server import create_app
from starlette.testclient import TestClient

MODULE = textwrap.dedent("""
    import numpy as np
    WEIGHTS = None

    def load():
        global WEIGHTS
        WEIGHTS = np.array([1.0, 2.0])

    def predict(inputs):
        x = next(iter(inputs.values()))
        if x.shape[-1] != 2:
            raise ValueError("two features per row, please")
        return x @ WEIGHTS
""")

CLASS = textwrap.dedent("""
    import numpy as np

    class Doubler:
        def load(self):
            self.factor = 2

        def predict(self, inputs):
            x = inputs["x"]
            return {"doubled": x * self.factor, "total": x.sum(axis=-1)}
""")


def model_dir(tmp_path: Path, source: str, **extra: object) -> Path:
    (tmp_path / "model.py").write_text(source)
    (tmp_path / "model.json").write_text(json.dumps({
        "name": "code", "version": "1", "runtime": "python", "artifact": "model.py", **extra}))
    return tmp_path


def test_module_with_load_and_predict(tmp_path: Path) -> None:
    client = TestClient(create_app(load(model_dir(tmp_path, MODULE))))
    response = client.post("/v2/models/code/infer", json={"inputs": [
        {"name": "anything", "shape": [2, 2], "datatype": "FP64", "data": [1, 1, 2, 3]}]})
    assert response.status_code == 200, response.text
    (out,) = response.json()["outputs"]
    assert out["name"] == "predict" and out["data"] == [3.0, 8.0]
    assert client.post("/predict", json={"instances": [[1, 1]]}).json() == {"predictions": [3.0]}
    bad = client.post("/predict", json={"instances": [[1, 1, 1]]})
    assert bad.status_code == 400 and "two features per row" in bad.json()["error"]
    assert client.get("/v2/models/code").json()["platform"] == "python"


def test_a_class_entrypoint_with_several_outputs(tmp_path: Path) -> None:
    client = TestClient(create_app(load(model_dir(tmp_path, CLASS, entrypoint="Doubler"))))
    response = client.post("/v2/models/code/infer", json={
        "inputs": [{"name": "x", "shape": [1, 3], "datatype": "INT64", "data": [1, 2, 3]}],
        "outputs": [{"name": "total"}]})
    assert response.json()["outputs"] == [
        {"name": "total", "datatype": "INT64", "shape": [1], "data": [6]}]
    missing = client.post("/v2/models/code/infer", json={
        "inputs": [{"name": "x", "shape": [1], "datatype": "INT64", "data": [1]}],
        "outputs": [{"name": "nope"}]})
    assert missing.status_code == 400 and "no output 'nope'" in missing.json()["error"]


@pytest.mark.parametrize(
    ("source", "extra"),
    [("def load():\n    raise RuntimeError('no weights')\n", {}),
     ("x = 1\n", {}),
     (CLASS, {"entrypoint": "Missing"})],
)
def test_code_that_cannot_serve_fails_the_check(tmp_path: Path, source: str, extra: dict) -> None:
    assert main(["check", str(model_dir(tmp_path, source, **extra))]) == 1
