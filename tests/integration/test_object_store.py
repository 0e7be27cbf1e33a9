"""The object store client against a real S3 server (moto's, started here):
buckets, objects, training runs, and what an outage or a hung server does."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiart.core.errors import ObjectMissing, StoreUnavailable
from aiart.core.store_layout import RunRef
from aiart.store.client import ObjectStore, StoreSettings
from aiart.store.runs import RunError, fetch_run_model, list_runs, upload_run
from moto.server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[tuple[ThreadedMotoServer, int]]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield server, port
    server.stop()


@pytest.fixture
def store(s3_server: tuple[ThreadedMotoServer, int]) -> ObjectStore:
    return ObjectStore(StoreSettings(endpoint=f"127.0.0.1:{s3_server[1]}", access_key="test",
                                     secret_key="test-secret", read_timeout=2.0))


async def test_buckets_and_objects(store: ObjectStore) -> None:
    assert await store.ensure_bucket("aiart-objects") is True
    assert await ObjectStore(store.settings).ensure_bucket("aiart-objects") is False
    await store.put("aiart-objects", "a/b.bin", b"\x00\x01", metadata={"sha256": "x"})
    assert await store.get("aiart-objects", "a/b.bin") == b"\x00\x01"
    etag, size, meta = await store.stat("aiart-objects", "a/b.bin") or ("", 0, {})
    assert (size, meta) == (2, {"sha256": "x"}) and etag
    assert await store.stat("aiart-objects", "nope") is None
    assert await store.list("aiart-objects", "a/") == ["a/b.bin"]
    with pytest.raises(ObjectMissing):
        await store.get("aiart-objects", "nope")
    with pytest.raises(ObjectMissing):
        await store.get("no-such-bucket", "x")
    # A new version of an object is read anew, not from the memo.
    await store.put("aiart-objects", "a/b.bin", b"\x02")
    assert await store.get("aiart-objects", "a/b.bin") == b"\x02"
    await store.remove_bucket("aiart-objects")
    assert await store.ensure_bucket("aiart-objects") is True


async def test_a_training_run_round_trips_with_its_layout(store: ObjectStore, tmp_path: Path
                                                          ) -> None:
    (tmp_path / "model.onnx").write_bytes(b"\x08\x07model")
    (tmp_path / "confusion.csv").write_text("1,0\n0,1\n")
    run = await upload_run(store, "runs-demo", tmp_path / "model.onnx",
                           metrics={"f1": 0.9}, params={"depth": 3},
                           files=[("eval/confusion.csv", tmp_path / "confusion.csv")])
    prefix = f"runs/{run.run_id}/"
    assert sorted(await store.list("aiart-runs-demo", prefix)) == [
        f"{prefix}files/eval/confusion.csv", f"{prefix}metrics.json", f"{prefix}model/model.onnx",
        f"{prefix}params.json", f"{prefix}run.json"]
    assert await store.get("aiart-runs-demo", f"{prefix}metrics.json") == (
        b'{\n  "f1": 0.9\n}')
    data, record = await fetch_run_model(store, RunRef("runs-demo", run.run_id))
    assert data == b"\x08\x07model" and record == run
    second = await upload_run(store, "runs-demo", tmp_path / "model.onnx")
    # Run ids sort by time to the second; two runs in one second come in either order.
    assert sorted(r.run_id for r in await list_runs(store, "runs-demo")) == sorted(
        [run.run_id, second.run_id])

    await store.put("aiart-runs-demo", f"{prefix}model/model.onnx", b"changed")
    with pytest.raises(RunError, match="altered"):
        await fetch_run_model(store, RunRef("runs-demo", run.run_id))
    with pytest.raises(ObjectMissing):
        await fetch_run_model(store, RunRef("runs-demo", "20200101T000000Z-00000000"))


async def test_an_outage_fails_fast_and_the_store_recovers(
        store: ObjectStore, s3_server: tuple[ThreadedMotoServer, int]) -> None:
    server, _ = s3_server
    await store.ensure_bucket("aiart-outage")
    await store.put("aiart-outage", "k", b"kept")
    server.stop()
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await store.stat("aiart-outage", "k")
        assert time.monotonic() - started < 5
    finally:
        server.start()
    assert await store.get("aiart-outage", "k") == b"kept"


async def test_a_store_that_never_answers_does_not_hang_a_caller() -> None:
    # Accepts connections and reads, never answers: a paused or wedged server.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    hung = ObjectStore(StoreSettings(endpoint=f"127.0.0.1:{listener.getsockname()[1]}",
                                     access_key="a", secret_key="b", read_timeout=1.0))
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await hung.get("aiart-x", "k")
        assert time.monotonic() - started < 10
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
