"""The operator's main loop: list, watch, resync, and bounded parallel workers.

Events are hints: each one enqueues the model it concerns (or every model,
when it cannot tell which), every reconnect of the event stream enqueues
every model, and so does a periodic resync. Workers take one model at a time
per model, several models in parallel.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiart.catalog.configs import CATALOG_PREFIX
from aiart.control.deps import Deps
from aiart.control.jobs import KEY_PREFIX as JOB_KEY_PREFIX
from aiart.control.jobs import job_key, reconcile_job
from aiart.control.metrics import OperatorMetrics
from aiart.control.reconcile import Outcome, reconcile_model
from aiart.control.workqueue import WorkQueue
from aiart.core import labels as L
from aiart.core.errors import TransientError
from aiart.core.objects import ConfigObject, ServiceObject

log = logging.getLogger("aiart.loop")
RECORD_PREFIXES = (CATALOG_PREFIX, "aiart-apikey-")
MAX_BACKOFF = 60.0


def _what(key: str) -> str:
    return (f"job {key.removeprefix(JOB_KEY_PREFIX)}" if key.startswith(JOB_KEY_PREFIX)
            else f"model {key}")


class Operator:
    def __init__(
        self,
        deps: Deps,
        *,
        reconcile: Callable[[Deps, str], Awaitable[Outcome]] = reconcile_model,
        metrics: OperatorMetrics | None = None,
    ) -> None:
        self.deps = deps
        self.reconcile_job = reconcile_job
        self.queue = WorkQueue()
        self.metrics = metrics
        if metrics is not None:
            metrics.queue_depth.set_function(lambda: len(self.queue))
        self.reconcile = reconcile
        self._failures: dict[str, int] = {}
        self._known: dict[str, str] = {}  # object id -> model name, or job:<id>
        self.passes = 0

    async def enqueue_all(self) -> None:
        configs = await self.deps.cluster.list_model_configs()
        services = await self.deps.cluster.list_services()
        keys = set()
        objects: list[ConfigObject | ServiceObject] = [*configs, *services]
        for obj in objects:
            model = obj.labels.get(L.MODEL)
            if model:
                self._known[obj.id] = model
                keys.add(model)
        # A stream binding is its model's business (control/streams.py).
        for config in await self.deps.cluster.list_configs(L.STREAM_BINDING):
            model = config.labels[L.STREAM_BINDING]
            if model:
                self._known[config.id] = model
                keys.add(model)
        jobs: list[ConfigObject | ServiceObject] = [
            *await self.deps.cluster.list_configs(L.JOB),
            *await self.deps.cluster.list_job_services()]
        for obj in jobs:
            job = obj.labels.get(L.JOB)
            if job:
                self._known[obj.id] = job_key(job)
                keys.add(job_key(job))
        for key in keys:
            self.queue.add(key)

    def backoff(self, key: str) -> float:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        return float(min(MAX_BACKOFF, 0.5 * 2.0 ** (failures - 1)) * random.uniform(0.8, 1.2))

    def count(self, outcome: str, started: float) -> None:
        self.passes += 1
        if self.metrics is not None:
            self.metrics.reconciles.labels(outcome).inc()
            self.metrics.reconcile_seconds.observe(time.monotonic() - started)

    async def work_one(self, key: str) -> None:
        started = time.monotonic()
        try:
            if key.startswith(JOB_KEY_PREFIX):
                outcome = await self.reconcile_job(self.deps, key.removeprefix(JOB_KEY_PREFIX))
            else:
                outcome = await self.reconcile(self.deps, key)
        except TransientError as exc:
            self.count("retry", started)
            delay = self.backoff(key)
            log.warning("%s: %s; retrying in %.1f s", _what(key), exc, delay)
            self.queue.add(key, delay)
            return
        except Exception:
            self.count("error", started)
            delay = self.backoff(key)
            log.exception("%s: reconcile failed; retrying in %.1f s", _what(key), delay)
            self.queue.add(key, delay)
            return
        self.count("retry" if outcome.transient else "ok", started)
        if outcome.transient:
            self.queue.add(key, self.backoff(key))
            return
        self._failures.pop(key, None)
        if outcome.requeue_after is not None:
            self.queue.add(key, outcome.requeue_after)

    async def worker(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                await self.work_one(key)
            finally:
                self.queue.done(key)

    async def ticker(self) -> None:
        while True:
            await asyncio.sleep(self.deps.settings.resync_seconds)
            try:
                await self.enqueue_all()
            except TransientError as exc:
                log.warning("resync failed: %s", exc)

    def on_event(self, event: dict[str, Any]) -> bool:
        """Enqueue the model an event concerns; False when it cannot tell which."""
        actor = event.get("Actor") or {}
        name = str((actor.get("Attributes") or {}).get("name", ""))
        if event.get("Type") == "config" and name.startswith(RECORD_PREFIXES):
            # aiart's own records (the catalog): they concern no model, and a
            # resync for each would make every status change cost a full pass.
            return True
        model = self._known.get(actor.get("ID", ""))
        if model is None:
            return False
        if (event.get("Type") == "config" and event.get("Action") == "update"
                and model in self._failures):
            # A label change on a model that is backing off is the operator's
            # own status write ("retrying after ..."): a pass now would undo
            # the backoff, and each failing pass writes again. That made a
            # hot loop (a pass every 0.1 s) while the registry was away. The
            # backoff's own timer brings the model back; new or removed
            # configs and service changes still do at once.
            return True
        self.queue.add(model)
        return True

    async def watcher(self) -> None:
        delay = 0.5
        while True:
            connected: float | None = None
            try:
                # List after subscribing would be ideal; the engine offers no
                # resource versions, so list on every (re)connect instead.
                stream = self.deps.cluster.events()
                await self.enqueue_all()
                connected = time.monotonic()
                async for event in stream:
                    if not self.on_event(event):
                        await self.enqueue_all()
                log.warning("event stream ended")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("event stream failed: %s", exc)
            if connected is not None and time.monotonic() - connected >= 5.0:
                delay = 0.5  # it served a while: reconnect at once
                continue
            # Failing, or ending as soon as it starts (an engine restarting or
            # overloaded): back off rather than relist in a tight loop.
            log.warning("reconnecting to the event stream in %.1f s", delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self.watcher())
            group.create_task(self.ticker())
            for _ in range(self.deps.settings.workers):
                group.create_task(self.worker())
