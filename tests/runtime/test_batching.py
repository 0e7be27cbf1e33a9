"""Adaptive batching (runtimes/aiart_runtime/batching.py): concurrent
requests merged into one model call, each caller given its own rows and its
own errors; a lone request never waits for the timer."""

from __future__ import annotations

import asyncio
import json
import pickle
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiart_runtime.__main__ import load
from aiart_runtime.batching import Batcher
from aiart_runtime.protocol import ProtocolError, Tensor
from aiart_runtime.server import create_app
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

# Long enough that a test passing by the timer would hang past its own timeout.
NEVER_MS = 60_000.0


def tensor(rows: list[list[float]], name: str = "x") -> tuple[Tensor, ...]:
    data = np.asarray(rows, dtype=np.float64)
    return (Tensor(name=name, datatype="FP64", shape=data.shape, data=data),)


class Doubler:
    """A model that doubles its rows and records each call's row count; a row
    holding a negative number is an error of the whole call, as a real
    estimator's would be."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, inputs: tuple[Tensor, ...],
                 wanted: tuple[str, ...] | None) -> list[tuple[str, Any]]:
        data = inputs[0].data
        self.calls.append(data.shape[0])
        if (data < 0).any():
            raise ProtocolError("negative values are not allowed")
        return [("y", data * 2), ("first", data[:, 0])]


async def together(batcher: Batcher, requests: list[tuple[Tensor, ...]]) -> list[Any]:
    """Requests that all arrived before any joined, as concurrent callers'."""
    for _ in requests:
        batcher.arrive()
    return await asyncio.wait_for(asyncio.gather(
        *(batcher.infer(r, None) for r in requests), return_exceptions=True), 5)


async def test_concurrent_requests_share_one_call_and_get_their_own_rows() -> None:
    model = Doubler()
    batcher = Batcher(model, max_batch_size=64, max_latency_ms=NEVER_MS)
    requests = [tensor([[i, i + 0.5]] * (1 + i % 3)) for i in range(8)]
    answers = await together(batcher, requests)
    assert model.calls == [sum(1 + i % 3 for i in range(8))]
    for i, answer in enumerate(answers):
        outputs = dict(answer)
        assert outputs["y"].tolist() == [[2 * i, 2 * i + 1]] * (1 + i % 3)
        assert outputs["first"].tolist() == [i] * (1 + i % 3)


async def test_a_bad_request_gets_its_error_and_the_others_their_answers() -> None:
    model = Doubler()
    batcher = Batcher(model, max_batch_size=64, max_latency_ms=NEVER_MS)
    answers = await together(batcher, [tensor([[1, 1]]), tensor([[-1, 1]]), tensor([[3, 3]])])
    assert isinstance(answers[1], ProtocolError)
    assert dict(answers[0])["y"].tolist() == [[2, 2]]
    assert dict(answers[2])["y"].tolist() == [[6, 6]]
    assert model.calls == [3, 1, 1, 1]  # the merged call, then each alone


async def test_batches_respect_their_size_and_mix_no_shapes_or_outputs() -> None:
    model = Doubler()
    batcher = Batcher(model, max_batch_size=4, max_latency_ms=NEVER_MS)
    answers = await together(batcher, [tensor([[i, i]]) for i in range(10)])
    assert model.calls == [4, 4, 2]
    assert [dict(a)["y"].tolist() for a in answers] == [[[2 * i, 2 * i]] for i in range(10)]
    model.calls.clear()
    wide = tensor([[1, 2, 3]])
    for _ in range(3):
        batcher.arrive()
    mixed = await asyncio.wait_for(asyncio.gather(
        batcher.infer(tensor([[1, 1]]), None), batcher.infer(wide, None),
        batcher.infer(tensor([[2, 2]]), ("y",))), 5)
    assert sorted(model.calls) == [1, 1, 1]  # three shapes of request: three calls
    assert dict(mixed[1])["y"].tolist() == [[2, 4, 6]]


async def test_a_lone_request_never_waits_for_the_timer() -> None:
    model = Doubler()
    batcher = Batcher(model, max_batch_size=64, max_latency_ms=NEVER_MS)
    batcher.arrive()
    answer = await asyncio.wait_for(batcher.infer(tensor([[1, 2]]), None), 5)
    assert dict(answer)["y"].tolist() == [[2, 4]]


async def test_a_batch_waits_for_a_slow_body_at_most_its_latency() -> None:
    model = Doubler()
    batcher = Batcher(model, max_batch_size=64, max_latency_ms=50)
    batcher.arrive()
    batcher.arrive()  # a second request whose body never comes
    answer = await asyncio.wait_for(batcher.infer(tensor([[1, 2]]), None), 5)
    assert dict(answer)["y"].tolist() == [[2, 4]] and model.calls == [1]


def batched_model_dir(path: Path) -> Path:
    x, y = load_iris(return_X_y=True)
    (path / "model.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(x, y)))
    (path / "model.json").write_text(json.dumps({
        "name": "iris", "version": "1", "runtime": "sklearn", "artifact": "model.pkl",
        "inputs": None, "outputs": None,
        "batching": {"max_batch_size": 32, "max_latency_ms": 20}}))
    return path


@pytest.mark.parametrize("concurrent", [1, 16])
async def test_the_server_batches_and_answers_as_it_does_unbatched(
        tmp_path: Path, concurrent: int) -> None:
    """Through the model server's HTTP app: each of many concurrent callers
    gets the predictions for its own rows, a malformed one its own 400."""
    app = create_app(load(batched_model_dir(tmp_path)))
    estimator = pickle.loads((tmp_path / "model.pkl").read_bytes())
    x, _ = load_iris(return_X_y=True)
    rows = [x[i:i + 1 + i % 3].tolist() for i in range(concurrent)]

    def body(sample: list[list[float]]) -> dict[str, Any]:
        return {"inputs": [{"name": "x", "datatype": "FP64",
                            "shape": [len(sample), len(sample[0])], "data": sample}]}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://model") as client:
        calls = [client.post("/v2/models/iris/infer", json=body(r)) for r in rows]
        bad = client.post("/v2/models/iris/infer", json=body([[1.0, 2.0, 3.0]]))
        *answers, refused = await asyncio.gather(*calls, bad)
    assert refused.status_code == 400, refused.text
    for sample, answer in zip(rows, answers, strict=True):
        assert answer.status_code == 200, answer.text
        outputs = {o["name"]: o["data"] for o in answer.json()["outputs"]}
        assert outputs["predict"] == estimator.predict(np.asarray(sample)).tolist()
    calls = [s.value for metric in app.state.metrics.registry.collect()
             for s in metric.samples if s.name == "aiart_batch_rows_count"]
    rows_seen = [s.value for metric in app.state.metrics.registry.collect()
                 for s in metric.samples if s.name == "aiart_batch_rows_sum"]
    assert rows_seen == [sum(len(r) for r in rows) + 1]
    # The requests the server had read together went to the model together:
    # the good ones in one call, the one of another shape in its own.
    assert calls == [2]
