"""An anonymous caller's inference request never makes a model server fail
(500): shapes whose element count overflows, mismatches the data or exceeds
what an array can hold are a 400 with a message, on the JSON and the binary
paths. Found by schemathesis against the OIP REST spec; kept as cases and
as a property over huge and zero dimensions."""

from __future__ import annotations

import json
import struct

import pytest
from aiart_runtime.__main__ import load
from aiart_runtime.server import create_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from tests.fakes import iris_model_dir

HUGE = [15103099, 81397181, 14172, 0]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    return TestClient(create_app(load(iris_model_dir(tmp_path_factory.mktemp("m"))),
                                 max_body_bytes=64 * 1024))


def infer(server: TestClient, shape: list[int], data: list[float], datatype: str = "FP64",
          binary: bool = False) -> tuple[int, str]:
    tensor: dict[str, object] = {"name": "x", "shape": shape, "datatype": datatype}
    if binary:
        raw = struct.pack(f"<{len(data)}d", *data)
        tensor["parameters"] = {"binary_data_size": len(raw)}
        head = json.dumps({"inputs": [tensor]}).encode()
        answer = server.post("/v2/models/iris/infer", content=head + raw,
                             headers={"Inference-Header-Content-Length": str(len(head))})
    else:
        tensor["data"] = data
        answer = server.post("/v2/models/iris/infer", json={"inputs": [tensor]})
    return answer.status_code, answer.text


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("shape", [HUGE, [0, 2**62, 2**62], [2**63 - 1, 0], [1] * 80,
                                   [0] * 70, [2**40, 2**40, 0, 4]])
def test_shapes_an_array_cannot_take_are_a_400(server: TestClient, shape: list[int],
                                               binary: bool) -> None:
    status, text = infer(server, shape, [], binary=binary)
    assert status == 400, (status, text)
    assert "shape" in json.loads(text)["error"]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.lists(st.one_of(st.integers(0, 8), st.integers(0, 2**64), st.just(0)),
                      max_size=8),
       data=st.lists(st.floats(-10, 10), max_size=12), binary=st.booleans())
def test_any_shape_is_answered_or_refused_never_a_500(
        server: TestClient, shape: list[int], data: list[float], binary: bool) -> None:
    status, text = infer(server, shape, data, binary=binary)
    assert status == 200 or 400 <= status < 500, (status, text[:300])
