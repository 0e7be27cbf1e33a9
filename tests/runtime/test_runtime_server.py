"""The sklearn model server: Open Inference Protocol, /predict, errors, metrics."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from aiart_runtime.__main__ import load, main
from aiart_runtime.server import create_app
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model")
    x, y = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=500).fit(x, y)
    (path / "model.pkl").write_bytes(pickle.dumps(estimator))
    (path / "model.json").write_text(json.dumps({
        "name": "iris", "version": "1", "runtime": "sklearn", "artifact": "model.pkl",
        "inputs": None, "outputs": None}))
    return path


@pytest.fixture(scope="module")
def client(model_dir: Path) -> TestClient:
    return TestClient(create_app(load(model_dir), max_body_bytes=64 * 1024))


def infer(client: TestClient, body: object, path: str = "/v2/models/iris/infer") -> tuple[int, dict]:
    response = client.post(path, content=json.dumps(body))
    return response.status_code, response.json()


def test_health_and_metadata(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}
    assert client.get("/v2").json()["name"] == "aiart"
    meta = client.get("/v2/models/iris").json()
    assert meta["name"] == "iris" and meta["versions"] == ["1"] and meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
    assert client.get("/v2/models/iris/versions/1/ready").json() == {"name": "iris", "ready": True}
    assert client.get("/v2/models/iris/versions/7/ready").status_code == 404
    assert client.get("/v2/models/wine").status_code == 404


@pytest.mark.parametrize("datatype", ["FP64", "FP32", "INT64"])
def test_infer_json_tensors(client: TestClient, datatype: str) -> None:
    data = ROWS if datatype != "INT64" else [[5, 3, 1, 0], [7, 3, 5, 2]]
    status, body = infer(client, {"id": "r1", "inputs": [
        {"name": "anything", "shape": [2, 4], "datatype": datatype, "data": data}]})
    assert status == 200, body
    assert body["id"] == "r1" and body["model_name"] == "iris"
    predict = body["outputs"][0]
    assert predict["name"] == "predict" and predict["shape"] == [2]
    assert predict["data"] == [0, 2]
    assert body["outputs"][1]["shape"] == [2, 3]


def test_requested_outputs_and_versioned_path(client: TestClient) -> None:
    status, body = infer(client, {"inputs": [
        {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}],
        "outputs": [{"name": "predict_proba"}]}, "/v2/models/iris/versions/1/infer")
    assert status == 200
    assert [o["name"] for o in body["outputs"]] == ["predict_proba"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": [1, 2]}]},
         "has 2 elements but shape [2, 4] needs 8"),
        ({"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
         "takes 4 features"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}]},
         "datatype 'FP99'"),
        ({"inputs": [{"name": "x", "shape": [1, -4], "datatype": "FP64", "data": []}]},
         "non-negative integers"),
        # 2**32 * 2**32 wraps to 0 in 64-bit arithmetic: it must not pass for empty data.
        ({"inputs": [{"name": "x", "shape": [4294967296, 4294967296], "datatype": "FP64",
                      "data": []}]}, "is too large"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                      "data": ["a", "b", "c", "d"]}]}, "numbers only"),
        # One stranger among numbers (numpy would turn "1.5" into a number).
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                      "data": ["1.5", 2, 3, 4]}]}, "numbers only"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                      "data": [None, 2, 3, 4]}]}, "numbers only"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                      "data": [1, 2, 3, {"a": 1}]}]}, "numbers only"),
        ({"id": 5, "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                               "data": [1, 2, 3, 4]}]}, "id must be a string"),
        ({"parameters": {"a": [1]}, "inputs": [{"name": "x", "shape": [1, 4],
                                                 "datatype": "FP64", "data": [1, 2, 3, 4]}]},
         "parameters.a"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}],
          "outputs": [{"name": "nope"}]}, "no output 'nope'"),
        ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}],
          "outputs": [{}]}, "outputs[0].name"),
        ({"inputs": []}, "non-empty list"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_requests_get_400_with_a_message(client: TestClient, body: object, message: str) -> None:
    status, answer = infer(client, body)
    assert status == 400
    assert message in answer["error"], answer


def test_garbage_and_oversized_bodies(client: TestClient) -> None:
    response = client.post("/v2/models/iris/infer", content=b"\x00\xff garbage")
    assert response.status_code == 400 and "not valid JSON" in response.json()["error"]
    response = client.post("/v2/models/iris/infer", content=b"[" * 100_000)
    assert response.status_code == 413
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").json()


def test_predict_rows(client: TestClient) -> None:
    response = client.post("/predict", json={"instances": ROWS})
    assert response.status_code == 200 and response.json() == {"predictions": [0, 2]}
    assert client.post("/predict", json=ROWS).json() == {"predictions": [0, 2]}
    bad = client.post("/predict", json={"instances": [[1, 2]]})
    assert bad.status_code == 400 and "takes 4 features" in bad.json()["error"]
    bad = client.post("/predict", json={"instances": [{"a": 1}]})
    assert bad.status_code == 400 and "without feature names" in bad.json()["error"]


def test_metrics_count_requests(client: TestClient) -> None:
    infer(client, {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                               "data": ROWS[0]}]})
    text = client.get("/metrics").text
    assert 'aiart_requests_total{endpoint="infer",model="iris",outcome="ok",' in text
    assert "aiart_request_duration_seconds_bucket" in text


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus' text format, read with its parser."""
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no sample {name} {labels}")


def test_metrics_tell_outcomes_and_payload_sizes_apart(client: TestClient) -> None:
    before = client.get("/metrics").text
    ok = {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": ROWS[0]}]}
    sent = len(json.dumps(ok).encode())
    answer = client.post("/v2/models/iris/infer", content=json.dumps(ok))
    assert answer.status_code == 200
    assert client.post("/v2/models/iris/infer", content=b"{nope").status_code == 400
    assert client.post("/predict", json={"instances": [[1, 2]]}).status_code == 400
    after = client.get("/metrics").text

    def delta(name: str, **labels: str) -> float:
        base = {"model": "iris", "version": "1", **labels}
        try:
            old = metric_value(before, name, **base)
        except AssertionError:
            old = 0.0
        return metric_value(after, name, **base) - old

    assert delta("aiart_requests_total", endpoint="infer", outcome="ok") == 1
    assert delta("aiart_requests_total", endpoint="infer", outcome="client_error") == 1
    assert delta("aiart_requests_total", endpoint="predict", outcome="client_error") == 1
    assert delta("aiart_request_bytes_sum", endpoint="infer") == sent + len(b"{nope")
    assert delta("aiart_response_bytes_count", endpoint="infer") == 2
    assert delta("aiart_response_bytes_sum", endpoint="infer") >= len(answer.content)
    info = metric_value(after, "aiart_build_info", model="iris", runtime="sklearn")
    assert info == 1


def test_check_refuses_a_model_that_does_not_load(tmp_path: Path, model_dir: Path) -> None:
    (tmp_path / "model.json").write_text((model_dir / "model.json").read_text())
    (tmp_path / "model.pkl").write_bytes(b"\x80\x05garbage")
    assert main(["check", str(tmp_path)]) == 1
    assert main(["check", str(model_dir)]) == 0


def test_found_by_fuzzing_no_rows_and_out_of_range_numbers_are_the_callers(
        client: TestClient) -> None:
    status, body = infer(client, {"inputs": [{"name": "x", "shape": [0, 4], "datatype": "FP64",
                                              "data": []}]})
    assert status == 400 and "no rows" in body["error"]
    status, body = infer(client, {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                              "data": [1e39, 1, 1, 1]}]})
    assert status == 400 and "out of FP32's range" in body["error"]
    status, body = infer(client, {"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP16",
                                              "data": [70000, 1, 1, 1]}]})
    assert status == 400 and "out of FP16's range" in body["error"]


def test_found_by_fuzzing_missing_values_the_model_refuses_are_the_callers(
        client: TestClient) -> None:
    # A logistic regression takes no NaN: JSON null among the rows is the
    # request's fault (400, with scikit-learn's reason), not the model's.
    answer = client.post("/predict", json=[[None, None, None, None]])
    assert answer.status_code == 400, answer.text
    assert "null, NaN or infinity" in answer.json()["error"]
    # Finite values the model fails on stay the model's failure.
    assert client.post("/predict", json=[[1.0, 2.0, 3.0, 4.0]]).status_code == 200


def test_a_pinned_version_is_answered_only_by_that_version(client: TestClient) -> None:
    """``X-Aiart-Version`` pins a version on the model's unversioned address:
    the gateway sends a pin of a version the model lacks to the current
    version's server, which must say so instead of answering as itself."""
    body = json.dumps({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64",
                                   "data": ROWS[0]}]})
    ok = client.post("/v2/models/iris/infer", content=body, headers={"X-Aiart-Version": "1"})
    assert ok.status_code == 200 and ok.json()["model_version"] == "1"
    for path, method in (("/v2/models/iris/infer", "POST"), ("/predict", "POST"),
                         ("/v2/models/iris", "GET"), ("/v2/models/iris/ready", "GET")):
        wrong = client.request(method, path, content=body if method == "POST" else None,
                               headers={"X-Aiart-Version": "9"})
        assert wrong.status_code == 404, path
        assert wrong.json() == {"error": "model 'iris' has no version '9' here; it has '1'"}
    # Health and metrics answer whatever a caller pins.
    for path in ("/v2/health/ready", "/metrics"):
        assert client.get(path, headers={"X-Aiart-Version": "9"}).status_code == 200
