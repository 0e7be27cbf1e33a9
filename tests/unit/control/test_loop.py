"""The operator loop: events to keys, backoff on failure, requeue on request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiart.control.deps import Deps
from aiart.control.loop import Operator
from aiart.control.reconcile import Outcome
from aiart.core import labels as L
from aiart.core.errors import TransientError
from aiart.core.settings import OperatorSettings

from tests.fakes import FakeBuilder, FakeCluster, FakeGateway, manifest_yaml


def operator(cluster: FakeCluster, reconcile) -> Operator:  # type: ignore[no-untyped-def]
    deps = Deps(cluster=cluster, builder=FakeBuilder(), gateway=FakeGateway(cluster),
                settings=OperatorSettings())
    return Operator(deps, reconcile=reconcile)


async def test_listing_enqueues_every_model_and_events_enqueue_theirs() -> None:
    cluster = FakeCluster()
    cid = cluster.add_config("iris-1", manifest_yaml("iris", "1", "a"), {L.MODEL: "iris"})
    cluster.add_config("wine-1", manifest_yaml("wine", "1", "a"), {L.MODEL: "wine"})
    cluster.add_config("unrelated", b"x")
    op = operator(cluster, None)
    await op.enqueue_all()
    assert {await op.queue.get(), await op.queue.get()} == {"iris", "wine"}
    op.queue.done("iris")
    assert op.on_event({"Type": "config", "Actor": {"ID": cid}}) is True
    assert await op.queue.get() == "iris"
    op.queue.done("iris")
    op.queue.done("wine")
    # aiart's own catalog records concern no model: no relisting, nothing queued.
    assert op.on_event({"Type": "config", "Actor": {
        "ID": "rec", "Attributes": {"name": "aiart-catalog-0123abcd"}}}) is True
    assert len(op.queue) == 0
    # An object never listed: the caller must list everything again.
    assert op.on_event({"Type": "config", "Actor": {"ID": "new-one"}}) is False


async def test_a_stream_binding_is_its_models_key_and_a_job_its_own() -> None:
    cluster = FakeCluster()
    binding = cluster.add_config("press", b"name: p\ntopics: [a]\n", {L.STREAM_BINDING: "iris"})
    job = cluster.add_config("aiart-job-j1", b"model: iris\ninput: s3://aiart-iris/in/\n",
                             {L.JOB: "j1", L.JOB_OF: "iris"})
    ran: list[str] = []

    async def reconcile(deps: Deps, key: str) -> Outcome:
        ran.append(key)
        return Outcome(None)

    async def reconcile_job(deps: Deps, job_id: str) -> Outcome:
        ran.append(f"the job {job_id}")
        return Outcome(None)

    op = operator(cluster, reconcile)
    op.reconcile_job = reconcile_job
    await op.enqueue_all()
    for _ in range(2):
        key = await op.queue.get()
        await op.work_one(key)
        op.queue.done(key)
    assert sorted(ran) == ["iris", "the job j1"]
    assert op.on_event({"Type": "config", "Actor": {"ID": binding}}) is True
    assert op.on_event({"Type": "config", "Actor": {"ID": job}}) is True
    assert {await op.queue.get(), await op.queue.get()} == {"iris", "job:j1"}


async def test_failures_back_off_exponentially_and_success_resets() -> None:
    results: list[object] = [TransientError("registry away")] * 3 + [Outcome(None)]

    async def reconcile(deps: Deps, key: str) -> Outcome:
        result = results.pop(0)
        if isinstance(result, Exception):
            raise result
        assert isinstance(result, Outcome)
        return result

    op = operator(FakeCluster(), reconcile)
    for expected in (1, 2, 3):
        await op.work_one("iris")
        assert op._failures["iris"] == expected
        assert len(op.queue) == 1
        due = op.queue._due.pop("iris")
        op.queue._heap.clear()
        assert due > 0
    await op.work_one("iris")
    assert "iris" not in op._failures and len(op.queue) == 0
    # 0.5 s, 1 s, 2 s... within jitter, capped at 60 s.
    assert 0.4 <= op.backoff("x") <= 0.6 and 0.8 <= op.backoff("x") <= 1.2
    for _ in range(20):
        delay = op.backoff("x")
    assert delay <= 72


async def test_status_writes_of_a_model_backing_off_do_not_cut_its_backoff() -> None:
    # Each failing pass writes its status (a config label update, so an
    # event): were that to enqueue the model, the backoff would never hold.
    async def reconcile(deps: Deps, key: str) -> Outcome:
        raise TransientError("push to the registry failed: connection refused")

    cluster = FakeCluster()
    cid = cluster.add_config("iris-1", manifest_yaml("iris", "1", "a"), {L.MODEL: "iris"})
    op = operator(cluster, reconcile)
    await op.enqueue_all()
    assert await op.queue.get() == "iris"
    await op.work_one("iris")
    op.queue.done("iris")
    due = op.queue._due["iris"]
    assert op.on_event({"Type": "config", "Action": "update", "Actor": {"ID": cid}}) is True
    assert op.queue._due["iris"] == due, "a status write brought the model forward"
    # A new version (a config created) is the user's: it is looked at now.
    new = cluster.add_config("iris-2", manifest_yaml("iris", "2", "a"), {L.MODEL: "iris"})
    await op.enqueue_all()
    op.on_event({"Type": "config", "Action": "create", "Actor": {"ID": new}})
    assert op.queue._due["iris"] < due


async def test_requested_requeue_is_honoured() -> None:
    async def reconcile(deps: Deps, key: str) -> Outcome:
        return Outcome(requeue_after=0.01)

    op = operator(FakeCluster(), reconcile)
    await op.work_one("iris")
    assert len(op.queue) == 1 and op.passes == 1


async def test_a_broken_event_stream_reconnects_and_relists_what_changed_meanwhile() -> None:
    # The stream ends (an engine restart), then the engine refuses a
    # reconnect; a model declared while nothing was watching is found by the
    # listing made on the reconnect that works.
    cluster = FakeCluster()
    cluster.add_config("iris-1", manifest_yaml("iris", "1", "a"), {L.MODEL: "iris"})
    op = operator(cluster, None)
    connects = 0

    def events() -> AsyncIterator[dict[str, Any]]:
        nonlocal connects
        connects += 1
        if connects == 2:
            # While the engine is away: a model is declared, the stream fails.
            cluster.add_config("wine-1", manifest_yaml("wine", "1", "a"), {L.MODEL: "wine"})
            raise TransientError("engine away")
        return empty()

    async def empty() -> AsyncIterator[dict[str, Any]]:
        if False:  # pragma: no cover - an empty stream: it ends at once
            yield {}

    cluster.events = events  # type: ignore[method-assign]
    watcher = asyncio.create_task(op.watcher())
    try:
        for _ in range(100):
            await asyncio.sleep(0.05)
            if connects >= 3:
                break
    finally:
        watcher.cancel()
    assert connects >= 3, "the watcher did not reconnect after a failed attempt"
    queued = set()
    while len(op.queue):
        queued.add(await op.queue.get())
    assert queued == {"iris", "wine"}
