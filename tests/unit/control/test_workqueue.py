"""The coalescing work queue: one pass per burst, none lost while busy."""

from __future__ import annotations

import asyncio

from aiart.control.workqueue import WorkQueue


async def test_a_burst_for_one_key_becomes_one_item() -> None:
    queue = WorkQueue()
    for _ in range(5):
        queue.add("iris")
    queue.add("wine")
    got = {await queue.get(), await queue.get()}
    assert got == {"iris", "wine"}
    assert len(queue) == 0


async def test_a_key_added_while_active_runs_again_after_done() -> None:
    queue = WorkQueue()
    queue.add("iris")
    key = await queue.get()
    queue.add("iris")  # arrives while the pass runs
    assert len(queue) == 0, "an active key must not be handed to a second worker"
    queue.done(key)
    assert await asyncio.wait_for(queue.get(), 1) == "iris"


async def test_delayed_keys_wait_and_an_earlier_add_wins() -> None:
    queue = WorkQueue()
    queue.add("slow", delay=30)
    queue.add("slow", delay=0)
    assert await asyncio.wait_for(queue.get(), 1) == "slow"
    queue.add("later", delay=0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert await asyncio.wait_for(queue.get(), 1) == "later"
    assert loop.time() - start >= 0.04
