"""A coalescing, delaying work queue with one worker per key at a time.

Adding a key that is already waiting keeps the earlier due time; adding a key
that is being worked on marks it dirty so it runs once more afterwards. This
is what makes the loop level-triggered: a burst of events for one model
becomes one pass, and no event is lost while a pass runs.

Pure: no I/O.
"""

from __future__ import annotations

import asyncio
import heapq
import time


class WorkQueue:
    def __init__(self) -> None:
        self._due: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._active: set[str] = set()
        self._dirty: dict[str, float] = {}
        self._wakeup = asyncio.Event()

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: str, delay: float = 0.0) -> None:
        due = time.monotonic() + delay
        if key in self._active:
            self._dirty[key] = min(due, self._dirty.get(key, due))
            return
        if key in self._due and self._due[key] <= due:
            return
        self._due[key] = due
        heapq.heappush(self._heap, (due, key))
        self._wakeup.set()

    async def get(self) -> str:
        while True:
            now = time.monotonic()
            while self._heap and self._due.get(self._heap[0][1]) != self._heap[0][0]:
                heapq.heappop(self._heap)  # stale entry, superseded by an earlier add
            if self._heap and self._heap[0][0] <= now:
                _, key = heapq.heappop(self._heap)
                del self._due[key]
                self._active.add(key)
                return key
            timeout = self._heap[0][0] - now if self._heap else None
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                pass

    def done(self, key: str) -> None:
        self._active.discard(key)
        if key in self._dirty:
            due = self._dirty.pop(key)
            self.add(key, max(0.0, due - time.monotonic()))
