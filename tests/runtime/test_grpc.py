"""The model server over gRPC (the Open Inference Protocol's service): the
messages match oip.proto, a real OIP client (tritonclient.grpc, in a child
process: tests/triton_grpc.py) and one using the protocol's messages get
the same answers as over HTTP, errors are gRPC status codes with the HTTP
side's words, and only the gateway may call inference."""

from __future__ import annotations

import asyncio
import json
import pickle
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from aiart_runtime.__main__ import load
from aiart_runtime.gateway_only import GatewayOnly
from aiart_runtime.grpc_server import SERVICE, InferenceService, Refused, create_server, peer_host
from aiart_runtime.oip import messages as pb
from aiart_runtime.oip.descriptor import FILE
from aiart_runtime.server import create_app
from google.protobuf import descriptor_pb2
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from tests import triton_grpc
from tests.runtime.test_runtime_server import metric_value

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
OIP = Path(__file__).parents[2] / "runtimes" / "aiart_runtime" / "oip"


def test_the_committed_messages_are_oip_proto_compiled(tmp_path: Path) -> None:
    # hack/gen-proto.sh regenerates them; a change to oip.proto without it fails here.
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{OIP}",
                    f"--descriptor_set_out={tmp_path / 'oip.desc'}", "oip.proto"], check=True)
    (compiled,) = descriptor_pb2.FileDescriptorSet.FromString(
        (tmp_path / "oip.desc").read_bytes()).file
    assert compiled.SerializeToString() == FILE


def model_dir(path: Path, **extra: Any) -> Path:
    x, y = load_iris(return_X_y=True)
    (path / "model.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(x, y)))
    (path / "model.json").write_text(json.dumps({
        "name": "iris", "version": "1", "runtime": "sklearn", "artifact": "model.pkl",
        "inputs": None, "outputs": None, **extra}))
    return path


class Running:
    def __init__(self, server: grpc.aio.Server, port: int, app: Any) -> None:
        self.server, self.port, self.app = server, port, app
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")

    async def call(self, method: str, request: Any, response: Any,
                   metadata: tuple[tuple[str, str], ...] = ()) -> Any:
        rpc = self.channel.unary_unary(f"/{SERVICE}/{method}",
                                       request_serializer=type(request).SerializeToString,
                                       response_deserializer=response.FromString)
        return await rpc(request, metadata=metadata)


async def serve(path: Path, **extra: Any) -> Running:
    app = create_app(load(model_dir(path, **extra)), max_body_bytes=64 * 1024)
    server, port = create_server(app.plane, address="127.0.0.1:0",
                                 max_message_bytes=64 * 1024)
    await server.start()
    return Running(server, port, app)


@pytest.fixture(scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    served = await serve(tmp_path_factory.mktemp("model"))
    yield served
    await served.channel.close()
    await served.server.stop(0)


def row_input(rows: list[list[float]], datatype: str = "FP64", raw: bool = False) -> Any:
    request = pb.ModelInferRequest(model_name="iris", id="r1")
    tensor = request.inputs.add(name="input-0", datatype=datatype, shape=[len(rows), 4])
    if raw:
        dtype = {"FP64": "<f8", "FP32": "<f4", "FP16": "<f2"}[datatype]
        request.raw_input_contents.append(np.asarray(rows, dtype=dtype).tobytes())
    else:
        getattr(tensor.contents, "fp64_contents" if datatype == "FP64" else "fp32_contents"
                ).extend([x for row in rows for x in row])
    return request


async def test_tritonclient_gets_the_answers_http_gives(running: Running) -> None:
    target = f"127.0.0.1:{running.port}"
    meta, infer = await triton_grpc.calls_async(target, [
        {"model": "iris", "metadata": True},
        {"model": "iris", "rows": ROWS, "shape": [2, 4], "datatype": "FP32", "id": "t1"}])
    assert (meta["name"], meta["platform"]) == ("iris", "sklearn")
    assert meta["outputs"] == ["predict", "predict_proba"]
    assert (infer["id"], infer["version"], infer["predict"]) == ("t1", "1", [0, 2])
    answer = TestClient(running.app).post("/v2/models/iris/infer", json={"inputs": [
        {"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": ROWS}]}).json()
    assert answer["outputs"][0]["data"] == infer["predict"]
    np.testing.assert_allclose(np.asarray(answer["outputs"][1]["data"]).reshape(2, 3),
                               infer["proba"], rtol=1e-6)


async def test_the_answer_comes_in_the_form_the_request_used(running: Running) -> None:
    by_contents = await running.call("ModelInfer", row_input(ROWS), pb.ModelInferResponse)
    assert not by_contents.raw_output_contents
    predict = by_contents.outputs[0]
    assert (predict.name, predict.datatype, list(predict.shape)) == ("predict", "INT64", [2])
    assert list(predict.contents.int64_contents) == [0, 2]
    assert by_contents.id == "r1" and by_contents.model_version == "1"

    raw = row_input(ROWS, "FP32", raw=True)
    raw.outputs.add(name="predict")  # only what was asked for
    by_raw = await running.call("ModelInfer", raw, pb.ModelInferResponse)
    assert [o.name for o in by_raw.outputs] == ["predict"]
    assert np.frombuffer(by_raw.raw_output_contents[0], "<i8").tolist() == [0, 2]


@pytest.mark.parametrize(("mutate", "code", "words"), [
    (lambda r: r.inputs[0].shape.__setitem__(0, 3), "INVALID_ARGUMENT",
     "has 8 elements but shape [3, 4] needs 12"),
    (lambda r: r.inputs[0].__setattr__("datatype", "FP8"), "INVALID_ARGUMENT",
     "datatype 'FP8' is not one of"),
    (lambda r: r.ClearField("inputs"), "INVALID_ARGUMENT", "inputs must be a non-empty list"),
    (lambda r: r.__setattr__("model_name", "wine"), "NOT_FOUND",
     "model 'wine' is not served here"),
    (lambda r: r.__setattr__("model_version", "7"), "NOT_FOUND", "has no version '7' here"),
])
async def test_bad_calls_get_a_status_and_words(running: Running, mutate: Any, code: str,
                                                words: str) -> None:
    request = row_input(ROWS)
    mutate(request)
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await running.call("ModelInfer", request, pb.ModelInferResponse)
    assert error.value.code().name == code
    assert words in (error.value.details() or "")


async def test_raw_contents_are_checked_against_the_shapes(running: Running) -> None:
    request = row_input(ROWS, raw=True)
    request.raw_input_contents[0] = request.raw_input_contents[0][:-8]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await running.call("ModelInfer", request, pb.ModelInferResponse)
    assert error.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "binary_data_size is 56 bytes but shape [2, 4] of FP64 needs 64" in (
        error.value.details() or "")
    fp16 = row_input(ROWS, "FP16")
    fp16.inputs[0].contents.Clear()
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await running.call("ModelInfer", fp16, pb.ModelInferResponse)
    assert "FP16 travels in raw_input_contents only" in (error.value.details() or "")


async def test_a_version_pinned_by_metadata_must_be_this_one(running: Running) -> None:
    ok = await running.call("ModelInfer", row_input(ROWS), pb.ModelInferResponse,
                            (("aiart-model", "iris"), ("aiart-version", "1")))
    assert ok.model_version == "1"
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await running.call("ModelInfer", row_input(ROWS), pb.ModelInferResponse,
                           (("aiart-model", "iris"), ("aiart-version", "2")))
    assert error.value.code() is grpc.StatusCode.NOT_FOUND
    assert "asks for iris:2; this server has iris:1" in (error.value.details() or "")


async def test_a_message_over_the_limit_is_refused(running: Running) -> None:
    big = row_input([[1.0, 2.0, 3.0, 4.0]] * 3000)  # 96 kB of FP64, over the 64 KiB limit
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await running.call("ModelInfer", big, pb.ModelInferResponse)
    assert error.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server goes on answering.
    assert (await running.call("ServerLive", pb.ServerLiveRequest(),
                               pb.ServerLiveResponse)).live


async def test_grpc_calls_are_counted_in_the_same_metrics(running: Running) -> None:
    from prometheus_client import generate_latest

    def count(outcome: str) -> float:
        # None before the first such call (this test may run first).
        text = generate_latest(running.app.plane.metrics.registry).decode()
        try:
            return metric_value(text, "aiart_requests_total", endpoint="grpc", outcome=outcome)
        except AssertionError:
            return 0.0

    ok, bad = count("ok"), count("client_error")
    await running.call("ModelInfer", row_input(ROWS), pb.ModelInferResponse)
    with pytest.raises(grpc.aio.AioRpcError):
        await running.call("ModelInfer", pb.ModelInferRequest(model_name="iris"),
                           pb.ModelInferResponse)
    assert (count("ok"), count("client_error")) == (ok + 1, bad + 1)


async def test_batched_grpc_callers_each_get_their_own_rows(tmp_path: Path) -> None:
    served = await serve(tmp_path, batching={"max_batch_size": 16, "max_latency_ms": 20})
    try:
        rows = [[[5.1, 3.5, 1.4, 0.2]], [[6.7, 3.0, 5.2, 2.3]]] * 8
        answers = await asyncio.gather(*(
            served.call("ModelInfer", row_input(r), pb.ModelInferResponse) for r in rows))
        assert [list(a.outputs[0].contents.int64_contents) for a in answers] == [[0], [2]] * 8
    finally:
        await served.channel.close()
        await served.server.stop(0)


def test_only_the_gateway_may_call_inference() -> None:
    service = InferenceService.__new__(InferenceService)
    service.gate = GatewayOnly("token-of-1")
    service.settings = type("S", (), {"name": "iris", "version": "1"})()
    neighbour = "ipv4:10.0.7.9:41000"
    with pytest.raises(Refused) as refused:
        service._admit("ModelInfer", {}, neighbour)
    assert refused.value.code is grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(Refused):
        service._admit("ModelMetadata", {"x-aiart-gateway": "token-of-2"}, neighbour)
    service._admit("ModelInfer", {"x-aiart-gateway": "token-of-1"}, neighbour)
    service._admit("ServerLive", {}, neighbour)  # health stays open
    service._admit("ModelInfer", {}, "ipv6:[::1]:41000")  # from inside the container


@pytest.mark.parametrize(("peer", "host"), [
    ("ipv4:10.0.7.9:41000", "10.0.7.9"), ("ipv6:[::1]:5", "::1"),
    ("ipv6:[fe80::1%eth0]:5", "fe80::1%eth0"), ("unix:/tmp/s", "")])
def test_peer_host(peer: str, host: str) -> None:
    assert peer_host(peer) == host


async def test_tritonclient_errors_are_readable(running: Running) -> None:
    # What a tritonclient user sees for a refused call: the status and the words.
    (answer,) = await triton_grpc.calls_async(f"127.0.0.1:{running.port}", [
        {"model": "iris", "rows": [[1.0, 1.0, 1.0]], "shape": [1, 3]}])
    assert "INVALID_ARGUMENT" in answer["error"] and "4" in answer["error"], answer
