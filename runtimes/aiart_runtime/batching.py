"""Adaptive batching: concurrent inference requests merged into one model call.

A model that predicts a hundred rows in little more time than one (most
vectorised models) answers more requests per second when requests that
arrive together are predicted together. The batcher merges requests whose
inputs agree (same names, datatypes and shapes past the first dimension,
the same outputs asked for) along their first dimension, calls the model
once, and hands each caller its own rows back.

It is adaptive, so that it costs next to nothing when there is nothing to
merge: a batch goes to the model as soon as no other request is on its way
to it (the HTTP layer counts requests whose bodies are still arriving), on
the event loop's next turn, so that requests the server has already read
join it first; or when it holds ``max_batch_size`` rows; or
``max_latency_ms`` after it opened, whichever comes first. A lone caller
never waits for the timer.

Errors stay with their request: when a merged call fails, or gives back
outputs that do not have a row per input row, each request of the batch is
run alone, so one bad request gets its own error and the others their
answers.

Pure of HTTP: the data plane calls it (``dataplane.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .protocol import Tensor

Outputs = list[tuple[str, npt.NDArray[Any]]]
Run = Callable[[tuple[Tensor, ...], tuple[str, ...] | None], Outputs]
# What requests must share to be merged: each input's name, datatype and
# shape past the first dimension, and the outputs asked for.
Key = tuple[tuple[tuple[str, str, tuple[int, ...]], ...], tuple[str, ...] | None]


def rows_of(inputs: tuple[Tensor, ...]) -> int | None:
    """The rows a request holds: its inputs' common first dimension (None:
    they have none in common, and the request is run alone)."""
    firsts = {t.shape[0] if t.shape else None for t in inputs}
    if len(firsts) != 1:
        return None
    (rows,) = firsts
    return rows if rows else None


def key_of(inputs: tuple[Tensor, ...], wanted: tuple[str, ...] | None) -> Key:
    return tuple((t.name, t.datatype, tuple(t.shape[1:])) for t in inputs), wanted


@dataclass
class _Batch:
    key: Key
    rows: int = 0
    items: list[tuple[tuple[Tensor, ...], int, asyncio.Future[Outputs]]] = field(
        default_factory=list)
    timer: asyncio.TimerHandle | None = None


class Batcher:
    def __init__(self, run: Run, *, max_batch_size: int, max_latency_ms: float,
                 observe: Callable[[int], None] | None = None) -> None:
        self.run = run
        self.max_rows = max_batch_size
        self.max_latency = max_latency_ms / 1000
        # Requests whose bodies are still arriving: a batch waits for them.
        self.arriving = 0
        self.open: dict[Key, _Batch] = {}
        self.observe = observe or (lambda _: None)
        self.flush_planned = False

    def arrive(self) -> None:
        """A request has begun; its body is on its way."""
        self.arriving += 1

    def depart(self) -> None:
        """A request that arrived will not join a batch (or is about to)."""
        self.arriving = max(0, self.arriving - 1)
        self._plan_flush()

    def _plan_flush(self) -> None:
        """Nobody else is on the way: the open batches go on the loop's next
        turn (after the requests already read, which join them first)."""
        if self.arriving == 0 and self.open and not self.flush_planned:
            self.flush_planned = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_planned = False
        if self.arriving == 0:  # else a request arrived meanwhile: wait for it
            for key in list(self.open):
                self._dispatch(key)

    async def infer(self, inputs: tuple[Tensor, ...],
                    wanted: tuple[str, ...] | None) -> Outputs:
        """The model's outputs for this request's rows, computed with other
        requests' rows where they can be merged."""
        rows = rows_of(inputs)
        if rows is None or rows >= self.max_rows:
            self.depart()
            return self.run(inputs, wanted)
        # This request has arrived; the open batches wait for the others.
        self.arriving = max(0, self.arriving - 1)
        key = key_of(inputs, wanted)
        batch = self.open.get(key)
        if batch is not None and batch.rows + rows > self.max_rows:
            self._dispatch(key)
            batch = None
        if batch is None:
            batch = self.open[key] = _Batch(key)
            batch.timer = asyncio.get_running_loop().call_later(
                self.max_latency, self._dispatch_if_open, batch)
        answer: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        batch.items.append((inputs, rows, answer))
        batch.rows += rows
        if batch.rows >= self.max_rows:
            self._dispatch(key)
        self._plan_flush()
        return await answer

    def _dispatch_if_open(self, batch: _Batch) -> None:
        if self.open.get(batch.key) is batch:
            self._dispatch(batch.key)

    def _dispatch(self, key: Key) -> None:
        batch = self.open.pop(key)
        if batch.timer is not None:
            batch.timer.cancel()
        self.observe(batch.rows)
        if len(batch.items) == 1:
            inputs, _, answer = batch.items[0]
            _settle(answer, lambda: self.run(inputs, key[1]))
            return
        try:
            merged = tuple(
                Tensor(name=first.name, datatype=first.datatype,
                       shape=(batch.rows, *first.shape[1:]),
                       data=np.concatenate([item[0][i].data for item in batch.items]))
                for i, first in enumerate(batch.items[0][0]))
            outputs = self.run(merged, key[1])
            if any(array.ndim == 0 or array.shape[0] != batch.rows for _, array in outputs):
                raise ValueError("the outputs have no row per input row")
        except Exception:  # each request is then run alone: its own error
            for inputs, _, answer in batch.items:
                _settle(answer, lambda inputs=inputs: self.run(inputs, key[1]))  # type: ignore[misc]
            return
        start = 0
        for _, rows, answer in batch.items:
            if not answer.done():
                answer.set_result([(name, array[start:start + rows]) for name, array in outputs])
            start += rows


def _settle(answer: asyncio.Future[Outputs], call: Callable[[], Outputs]) -> None:
    if answer.done():  # its caller is gone
        return
    try:
        answer.set_result(call())
    except Exception as exc:  # the caller's own error, raised where it awaits
        answer.set_exception(exc)
