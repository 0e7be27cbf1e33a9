"""Payload logging (spec.logging): the log's batching, sampling and drops
with a writer in memory; a model server logging what it answered over
HTTP (JSON, binary tensors, /predict, errors) and gRPC, and never a header;
and the real writer putting objects into a real S3 server (moto's)."""

from __future__ import annotations

import base64
import gc
import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from aiart_runtime.__main__ import load
from aiart_runtime.grpc_server import create_server
from aiart_runtime.oip import messages as pb
from aiart_runtime.payloads import (
    Exchange,
    Lines,
    PayloadLog,
    from_settings,
    record,
    stamp,
    store_writer,
)
from aiart_runtime.server import create_app
from aiart_runtime.settings import ServerSettings
from hypothesis import given
from hypothesis import strategies as st
from moto.server import ThreadedMotoServer
from starlette.testclient import TestClient

from tests.integration.test_object_store import free_port
from tests.runtime.test_grpc import Running, model_dir, row_input
from tests.runtime.test_runtime_server import metric_value

ROWS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]
INFER = "/v2/models/iris/infer"


class Memory:
    """A store in memory: key -> JSON lines; ``gate`` holds each write."""

    def __init__(self, fail: int = 0) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail = fail
        self.gate = threading.Event()
        self.gate.set()

    def write(self, key: str, data: bytes) -> None:
        self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise OSError("the store is away")
        self.objects[key] = data

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for key in sorted(self.objects)
                for line in gzip.decompress(self.objects[key]).splitlines()]


def exchange(n: int, size: int = 10) -> Callable[[], Exchange]:
    body = json.dumps({"id": f"r{n}", "pad": "x" * size}).encode()
    return lambda: Exchange(at=time.time(), protocol="http", endpoint="infer", status=200,
                            seconds=0.001, request=body, response=b'{"outputs": []}')


def wait_for(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_records_are_batched_into_objects_and_flushed_on_close() -> None:
    store = Memory()
    payloads = PayloadLog(store.write, sample=1.0, model="iris", version="1", replica="r-a",
                          batch_records=4, flush_seconds=30)
    for n in range(10):
        payloads.offer(exchange(n))
    # Two full batches go at once; the last two wait for the flush time or close.
    wait_for(lambda: len(store.objects) == 2)
    payloads.close()
    keys = sorted(store.objects)
    assert len(keys) == 3 and all(k.startswith("payloads/") and k.endswith(".jsonl.gz")
                                  for k in keys)
    day, name = keys[0].split("/")[1:]
    assert time.strftime("%Y-%m-%d", time.gmtime()) == day and "-r-a-000001" in name
    records = store.records()
    assert [r["id"] for r in records] == [f"r{n}" for n in range(10)]
    assert records[0]["request"]["json"]["id"] == "r0"
    assert records[0]["response"] == {"json": {"outputs": []}}
    assert (records[0]["model"], records[0]["version"], records[0]["status"]) == ("iris", "1", 200)
    assert (payloads.written, payloads.dropped, payloads.failed, payloads.objects) == (10, 0, 0, 3)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(max_size=8)
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3), max_leaves=8)
BODIES = st.dictionaries(st.sampled_from(["id", "inputs", "parameters", "x"]), JSON_VALUES,
                         max_size=3)


@given(request=BODIES, response=BODIES, endpoint=st.sampled_from(["infer", "predict"]),
       status=st.sampled_from([200, 400]), seconds=st.floats(0, 100),
       at=st.floats(0, 4e9), indent=st.booleans())
def test_a_line_holds_the_same_record_whichever_way_it_is_written(
        request: dict[str, Any], response: dict[str, Any], endpoint: str, status: int,
        seconds: float, at: float, indent: bool) -> None:
    # The template around the bodies as they came (a request with line
    # breaks too) reads back as record() has it, field for field.
    raw = json.dumps(request, indent=2 if indent else None).encode()
    item = Exchange(at=at, protocol="http", endpoint=endpoint, status=status,
                    seconds=seconds, request=raw, response=json.dumps(response).encode())
    line = Lines(model="iris", version="1", replica="r-%a")(item)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == json.loads(json.dumps(
        record(item, model="iris", version="1", replica="r-%a")))


def test_times_are_iso_8601_to_the_microsecond_in_utc() -> None:
    assert stamp(1764976501.123456) == "2025-12-05T23:15:01.123456Z"
    assert stamp(1764976501.0) == "2025-12-05T23:15:01.000000Z"
    assert stamp(1764976502.5) == "2025-12-05T23:15:02.500000Z"  # the next second


def test_a_steady_stream_is_written_a_batch_per_flush_not_a_record_at_a_time() -> None:
    # Requests keep coming while a timed flush writes (each write takes a
    # while): what came meanwhile waits for the next flush, instead of the
    # writer putting one tiny object after another for as long as they come.
    class Slow(Memory):
        def write(self, key: str, data: bytes) -> None:
            time.sleep(0.02)
            super().write(key, data)

    store = Slow()
    payloads = PayloadLog(store.write, sample=1.0, model="iris", version="1",
                          batch_records=100_000, flush_seconds=0.3)
    stop = time.monotonic() + 1.5
    sent = 0
    while time.monotonic() < stop:
        payloads.offer(exchange(sent))
        sent += 1
        time.sleep(0.001)
    payloads.close()
    # 1.5 s / 0.3 s, and what close writes; the old loop wrote about 60.
    assert len(store.objects) <= 8, len(store.objects)
    assert payloads.written == sent == len(store.records())


def test_a_batch_is_written_when_its_first_record_is_old_enough() -> None:
    store = Memory()
    payloads = PayloadLog(store.write, sample=1.0, model="iris", version="1",
                          batch_records=1000, flush_seconds=0.3)
    payloads.offer(exchange(1))
    wait_for(lambda: len(store.objects) == 1, 5)
    assert payloads.written == 1
    payloads.close()


def test_only_the_sample_is_logged_and_unsampled_requests_cost_no_record() -> None:
    store = Memory()
    draws = iter([0.05, 0.5, 0.2, 0.09, 0.99])
    made = []

    def made_one(n: int) -> Callable[[], Exchange]:
        def make() -> Exchange:
            made.append(n)
            return exchange(n)()
        return make

    payloads = PayloadLog(store.write, sample=0.1, model="iris", version="1",
                          draw=lambda: next(draws))
    for n in range(5):
        payloads.offer(made_one(n))
    payloads.close()
    assert made == [0, 3]
    assert [r["id"] for r in store.records()] == ["r0", "r3"]


def test_a_slow_store_costs_records_not_waiting() -> None:
    store = Memory()
    store.gate.clear()  # the store hangs
    payloads = PayloadLog(store.write, sample=1.0, model="iris", version="1",
                          max_queued_bytes=10_000, batch_records=1, flush_seconds=0.01)
    started = time.perf_counter()
    for n in range(200):
        payloads.offer(exchange(n, size=200))
    offered = time.perf_counter() - started
    # Each offer returned at once (200 in well under a second, with no write
    # done), and what did not fit in 10,000 bytes was dropped and counted.
    assert offered < 1.0
    assert payloads.written == 0 and 150 < payloads.dropped < 200
    store.gate.set()  # the store comes back: what was queued is written
    payloads.close()
    assert payloads.written + payloads.dropped == 200
    assert len(store.records()) == payloads.written
    # Room again: the next request is logged.
    payloads2 = PayloadLog(store.write, sample=1.0, model="iris", version="1")
    payloads2.offer(exchange(999))
    payloads2.close()
    assert payloads2.written == 1


def test_a_batch_the_store_refuses_twice_is_counted_failed_and_the_log_goes_on() -> None:
    store = Memory(fail=2)
    payloads = PayloadLog(store.write, sample=1.0, model="iris", version="1",
                          batch_records=2, flush_seconds=30, retry_seconds=0.01)
    for n in range(4):
        payloads.offer(exchange(n))
    payloads.close()
    assert (payloads.failed, payloads.written) == (2, 2)
    assert [r["id"] for r in store.records()] == ["r2", "r3"]
    # Refused once only: the second try writes it.
    once = Memory(fail=1)
    payloads = PayloadLog(once.write, sample=1.0, model="iris", version="1",
                          retry_seconds=0.01)
    payloads.offer(exchange(7))
    payloads.close()
    assert (payloads.failed, payloads.written) == (0, 1)


@pytest.fixture
def logged(tmp_path: Path) -> Iterator[tuple[TestClient, Memory, PayloadLog]]:
    store = Memory()
    payloads = PayloadLog(store.write, sample=1.0, model="iris", version="1",
                          flush_seconds=30)
    app = create_app(load(model_dir(tmp_path)), max_body_bytes=64 * 1024, payloads=payloads)
    yield TestClient(app), store, payloads
    payloads.close()


def test_the_server_logs_what_it_answered_and_no_header(
        logged: tuple[TestClient, Memory, PayloadLog]) -> None:
    client, store, payloads = logged
    secret = "key-that-must-not-be-logged"
    headers = {"X-API-Key": secret, "Authorization": f"Bearer {secret}"}
    body = {"id": "json-1", "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64",
                                        "data": ROWS}]}
    answer = client.post(INFER, json=body, headers=headers)
    assert answer.status_code == 200
    # Binary tensors in and out.
    header = json.dumps({"id": "bin-1", "inputs": [
        {"name": "x", "shape": [2, 4], "datatype": "FP32",
         "parameters": {"binary_data_size": 32}}],
        "outputs": [{"name": "predict", "parameters": {"binary_data": True}}]}).encode()
    tensor = np.asarray(ROWS, "<f4").tobytes()
    binary = client.post(INFER, content=header + tensor, headers={
        **headers, "Inference-Header-Content-Length": str(len(header))})
    assert binary.status_code == 200
    bad = client.post(INFER, content=b"{not json", headers=headers)
    assert bad.status_code == 400
    predicted = client.post("/predict", json={"instances": ROWS}, headers=headers)
    assert predicted.status_code == 200
    payloads.close()
    records = store.records()
    assert [(r["endpoint"], r["status"]) for r in records] == [
        ("infer", 200), ("infer", 200), ("infer", 400), ("predict", 200)]
    first, second, third, fourth = records
    assert first["id"] == "json-1" and first["request"]["json"] == body
    assert first["response"]["json"] == answer.json()
    assert second["request"]["json"]["id"] == "bin-1"
    assert base64.b64decode(second["request"]["binary_base64"]) == tensor
    response_json = int(binary.headers["inference-header-content-length"])
    assert second["response"]["json"] == json.loads(binary.content[:response_json])
    assert base64.b64decode(second["response"]["binary_base64"]) == binary.content[response_json:]
    assert base64.b64decode(third["request"]["base64"]) == b"{not json"
    assert "not valid JSON" in third["response"]["json"]["error"]
    assert fourth["response"]["json"] == predicted.json()
    assert all(r["latency_ms"] > 0 and r["protocol"] == "http" for r in records)
    everything = b"".join(store.objects.values())
    assert secret.encode() not in everything and b"X-API-Key" not in everything
    scraped = client.get("/metrics").text
    assert metric_value(scraped, "aiart_payload_records_total", outcome="written") == 4
    assert metric_value(scraped, "aiart_payload_records_total", outcome="dropped") == 0


async def test_grpc_calls_are_logged_as_their_messages(tmp_path: Path) -> None:
    store = Memory()
    payloads = PayloadLog(store.write, sample=1.0, model="iris", version="1",
                          flush_seconds=30)
    app = create_app(load(model_dir(tmp_path)), max_body_bytes=64 * 1024, payloads=payloads)
    server, port = create_server(app.plane, address="127.0.0.1:0", max_message_bytes=64 * 1024)
    await server.start()
    running = Running(server, port, app)
    try:
        raw = row_input(ROWS, "FP32", raw=True)
        answer = await running.call("ModelInfer", raw, pb.ModelInferResponse)
        wrong = row_input(ROWS)
        wrong.inputs[0].shape[0] = 3
        with pytest.raises(Exception, match="needs 12"):
            await running.call("ModelInfer", wrong, pb.ModelInferResponse)
    finally:
        await running.channel.close()
        await server.stop(0)
    payloads.close()
    ok, refused = store.records()
    assert (ok["protocol"], ok["endpoint"], ok["status"], ok["id"]) == (
        "grpc", "ModelInfer", "OK", "r1")
    sent = base64.b64decode(ok["request"]["json"]["raw_input_contents"][0])
    assert sent == np.asarray(ROWS, "<f4").tobytes()
    assert ok["response"]["json"]["model_version"] == "1"
    assert len(ok["response"]["json"]["outputs"]) == len(answer.outputs)
    assert refused["status"] == "INVALID_ARGUMENT"
    assert "needs 12" in refused["response"]["json"]["error"]


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop()


def test_the_server_s_settings_open_a_log_that_writes_to_a_real_s3_server(
        s3: str, tmp_path: Path) -> None:
    client = boto3.client("s3", endpoint_url=f"http://{s3}", aws_access_key_id="test",
                          aws_secret_access_key="test-secret", region_name="us-east-1")
    client.create_bucket(Bucket="aiart-iris")
    (tmp_path / "access").write_text("test\n")
    (tmp_path / "secret").write_text("test-secret\n")
    settings = ServerSettings.from_env({
        "AIART_PAYLOAD_SAMPLE": "1", "AIART_STORE_ENDPOINT": s3,
        "AIART_STORE_BUCKET": "aiart-iris",
        "AIART_STORE_ACCESS_KEY_FILE": str(tmp_path / "access"),
        "AIART_STORE_SECRET_KEY_FILE": str(tmp_path / "secret")})
    payloads = from_settings(settings, model="iris", version="1")
    assert payloads is not None
    for n in range(3):
        payloads.offer(exchange(n))
    payloads.close()
    listed = client.list_objects_v2(Bucket="aiart-iris", Prefix="payloads/")["Contents"]
    assert len(listed) == 1
    got = client.get_object(Bucket="aiart-iris", Key=listed[0]["Key"])
    assert got["ContentType"] == "application/gzip"
    lines = gzip.decompress(got["Body"].read())
    assert [json.loads(line)["id"] for line in lines.splitlines()] == ["r0", "r1", "r2"]


def test_a_log_that_cannot_open_is_said_and_the_model_serves_without_it(
        caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    settings = ServerSettings.from_env({
        "AIART_PAYLOAD_SAMPLE": "0.5", "AIART_STORE_ENDPOINT": "store-gateway:9000",
        "AIART_STORE_BUCKET": "aiart-iris",
        "AIART_STORE_ACCESS_KEY_FILE": str(tmp_path / "missing"),
        "AIART_STORE_SECRET_KEY_FILE": str(tmp_path / "missing")})
    assert from_settings(settings, model="iris", version="1") is None
    assert "payload logging is asked for but cannot start" in caplog.text
    assert from_settings(ServerSettings.from_env({}), model="iris", version="1") is None


def test_the_real_writer_gives_up_on_a_store_that_does_not_answer() -> None:
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    write = store_writer(endpoint=f"127.0.0.1:{listener.getsockname()[1]}", secure=False,
                         bucket="aiart-iris", access_key="a", secret_key="b", read_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(Exception):  # noqa: B017 - urllib3's timeout, whichever it is
        write("payloads/x.jsonl.gz", gzip.compress(b"{}\n"))
    assert time.monotonic() - started < 5
    listener.close()


def test_a_queued_http_exchange_is_not_left_to_the_collector() -> None:
    # Thousands wait for their batch: tracked, each pass of the collector
    # walks them all, on the answer path's time (payloads.py).
    log = PayloadLog(lambda key, data: None, sample=1.0, model="m", version="1",
                     flush_seconds=3600)
    try:
        for _ in range(100):
            log.offer(lambda: Exchange(at=time.time(), protocol="http", endpoint="infer",
                                       status=200, seconds=0.001, request=b'{"inputs":[]}',
                                       response=b'{"outputs":[]}'))
        gc.collect(0)
        queued = list(log._pending)
        assert len(queued) == 100 and not any(gc.is_tracked(entry) for entry in queued)
    finally:
        log.close()
    assert log.written == 100, "queued so, they are still written whole"
