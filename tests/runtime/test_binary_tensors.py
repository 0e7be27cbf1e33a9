"""The binary tensor data extension, spoken by tritonclient's own codec."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
import tritonclient.http as triton
from aiart_runtime.__main__ import load
from aiart_runtime.protocol import ProtocolError, decode_request, encode_binary, split_binary
from aiart_runtime.server import create_app
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

ROWS = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    path = tmp_path_factory.mktemp("model")
    x, y = load_iris(return_X_y=True)
    (path / "model.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(x, y)))
    (path / "model.json").write_text(json.dumps({
        "name": "iris", "version": "1", "runtime": "sklearn", "artifact": "model.pkl"}))
    return TestClient(create_app(load(path)))


def call(client: TestClient, inputs: list, outputs: list | None = None) -> triton.InferResult:
    body, json_size = triton.InferenceServerClient.generate_request_body(inputs, outputs)
    headers = {} if json_size is None else {"Inference-Header-Content-Length": str(json_size)}
    response = client.post("/v2/models/iris/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    length = response.headers.get("Inference-Header-Content-Length")
    return triton.InferenceServerClient.parse_response_body(
        response.content, header_length=int(length) if length else None)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_binary_inputs_and_outputs(client: TestClient, dtype: type) -> None:
    tensor = triton.InferInput("input-0", list(ROWS.shape), triton.np_to_triton_dtype(dtype))
    tensor.set_data_from_numpy(ROWS.astype(dtype), binary_data=True)
    result = call(client, [tensor], [triton.InferRequestedOutput("predict", binary_data=True),
                                     triton.InferRequestedOutput("predict_proba", binary_data=True)])
    assert result.as_numpy("predict").tolist() == [0, 2]
    assert result.as_numpy("predict_proba").shape == (2, 3)
    assert result.get_output("predict")["parameters"]["binary_data_size"] == 16


def test_no_outputs_named_means_all_in_binary(client: TestClient) -> None:
    tensor = triton.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS, binary_data=True)
    result = call(client, [tensor])  # tritonclient then asks binary_data_output
    assert result.as_numpy("predict").tolist() == [0, 2]
    assert "binary_data_size" in result.get_output("predict_proba")["parameters"]


def test_mixed_json_input_and_binary_output(client: TestClient) -> None:
    tensor = triton.InferInput("input-0", list(ROWS.shape), "FP64")
    tensor.set_data_from_numpy(ROWS, binary_data=False)
    result = call(client, [tensor], [triton.InferRequestedOutput("predict", binary_data=False),
                                     triton.InferRequestedOutput("predict_proba", binary_data=True)])
    assert result.get_output("predict")["data"] == [0, 2]
    assert result.as_numpy("predict_proba").shape == (2, 3)


def header(size: int, shape: list[int], datatype: str = "FP64") -> bytes:
    return json.dumps({"inputs": [{"name": "x", "shape": shape, "datatype": datatype,
                                   "parameters": {"binary_data_size": size}}]}).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (header(16, [1, 4]) + b"\x00" * 16, "needs 32"),
        (header(64, [1, 4]) + b"\x00" * 32, "past the end"),
        (header(32, [1, 4]) + b"\x00" * 40, "no input claims"),
        (header(5, [2], "BYTES") + b"\x09\x00\x00\x00a", "truncated"),
    ],
)
def test_malformed_binary_requests(body: bytes, message: str) -> None:
    json_size = len(body.split(b"}]}")[0]) + 3
    head, tail = split_binary(body, str(json_size))
    with pytest.raises(ProtocolError, match=message):
        decode_request(json.loads(head), tail)


def test_header_length_must_fit(client: TestClient) -> None:
    response = client.post("/v2/models/iris/infer", content=b"{}",
                           headers={"Inference-Header-Content-Length": "999"})
    assert response.status_code == 400 and "within the body" in response.json()["error"]


def test_bytes_tensors_round_trip() -> None:
    array = np.array([b"ab", b"", "ünï".encode()], dtype=object)
    entry, payload = encode_binary("s", array)
    assert payload == b"".join(struct.pack("<I", len(v)) + v for v in array)
    head = json.dumps({"inputs": [{"name": "s", "shape": [3], "datatype": "BYTES",
                                   "parameters": {"binary_data_size": len(payload)}}]}).encode()
    request = decode_request(json.loads(head), memoryview(payload))
    assert request.inputs[0].data.tolist() == list(array)
    assert entry["parameters"]["binary_data_size"] == len(payload)




@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["FP64", "FP32"]),
       st.lists(st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=32),
                          st.integers(-2**53, 2**53), st.booleans()), min_size=1, max_size=12))
def test_numbers_decode_as_numpy_would_convert_them(datatype: str, values: list) -> None:
    # The fast path for FP64/FP32 (numpy checks the kind) gives what the
    # careful conversion gives.
    (tensor,) = decode_request({"inputs": [{"name": "x", "datatype": datatype,
                                             "shape": [len(values)], "data": values}]}).inputs
    expected = np.asarray(values, dtype=np.float64 if datatype == "FP64" else np.float32)
    assert tensor.data.dtype == expected.dtype
    np.testing.assert_array_equal(tensor.data, expected)
