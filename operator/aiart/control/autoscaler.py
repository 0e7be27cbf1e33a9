"""The autoscaler: every few seconds, each scalable version's load from
Prometheus, a decision (core/scaling.py), and the decision written to the
version's config labels; the reconcile pass that the label change brings
sizes the service (render_service's ``replicas``). And the activator's
wake calls for versions at zero.

Decisions live in Docker state only: an operator that restarts reads them
back and goes on, neither forgetting a version at zero nor waking it again.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from aiart.control.ports import Cluster, LoadReader
from aiart.core import labels as L
from aiart.core.objects import ConfigObject, ServiceObject
from aiart.core.plan import VersionPlan, plan_versions
from aiart.core.rollout import read_state as read_rollout
from aiart.core.scaling import (
    SLEEP_LEAD_SECONDS,
    Load,
    Move,
    ScaleState,
    decide,
    first_state,
    paced,
    read_state,
    replicas_text,
    state_labels,
    without_scale,
    worth_writing,
)

log = logging.getLogger("aiart.autoscaler")


@dataclass(frozen=True, slots=True)
class WakeAnswer:
    status: int  # HTTP: 202 woken (or already awake), 403, 404
    message: str
    replicas: int = 0
    # Where the version's tasks are (or will be) on the model network: the
    # activator reaches a task there as soon as it answers, without waiting
    # for Docker's DNS to name it (seconds later).
    addresses: tuple[str, ...] = ()


class Autoscaler:
    def __init__(self, cluster: Cluster, loads: LoadReader | None, *,
                 kick: Callable[[str], None], token_of: Callable[[str, str], str],
                 network: str = "aiart-models", interval: float = 2.0,
                 sleep_lead: float = SLEEP_LEAD_SECONDS) -> None:
        self.cluster = cluster
        self.sleep_lead = sleep_lead
        self.network = network
        self.loads = loads
        self.kick = kick  # a reconcile pass for the model, now
        self.token_of = token_of
        self.interval = interval
        # One decision at a time: a wake and a periodic pass must not both
        # write a version's labels from the same reading.
        self._lock = asyncio.Lock()
        # When the activator last asked for each version: requests it holds
        # are not in the gateway's figures yet, and a version that is slow
        # to start must not be put back to sleep under them.
        self._asked: dict[tuple[str, str], float] = {}

    async def run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception as exc:  # the engine away: the next tick tries again
                log.warning("cannot size scalable models: %s", exc)
            await asyncio.sleep(self.interval)

    async def tick(self) -> None:
        configs = await self.cluster.list_model_configs()
        services = {(s.labels.get(L.MODEL), s.labels.get(L.VERSION)): s
                    for s in await self.cluster.list_services()}
        plans = _plans(configs)
        rolling = _in_rollouts(plans)
        for plan in plans:
            assert plan.manifest is not None
            meta = plan.manifest.metadata
            if plan.manifest.spec.scaling is None:
                if L.SCALE_REPLICAS in plan.config.labels:
                    # No longer scalable: its fixed replicas rule again.
                    await self.cluster.update_config_labels(
                        plan.config, without_scale(plan.config.labels))
                continue
            service = services.get((meta.name, meta.version))
            if service is None:
                continue  # not deployed yet: its first replicas come from the manifest
            async with self._lock:
                await self._decide(plan, service, woken=False,
                                   rolling=(meta.name, meta.version) in rolling)

    async def _decide(self, plan: VersionPlan, service: ServiceObject, *, woken: bool,
                      rolling: bool = False) -> Move:
        manifest = plan.manifest
        assert manifest is not None and manifest.spec.scaling is not None
        scaling, meta = manifest.spec.scaling, manifest.metadata
        now = time.time()
        state = read_state(plan.config.labels) or first_state(scaling, now)
        if woken and state.replicas > 0 and state.sleep_at is None:
            return Move(state, "awake")  # its tasks are coming or there: nothing to write
        if woken and state.replicas > 0:
            # A request came through the activator as it was going to sleep:
            # it stays, and its own routes serve again.
            return await self._write(plan, state, Move(
                replace(state, sleep_at=None),
                f"{replicas_text(state.replicas)} kept: a request came as it was going to sleep",
                "woken"))
        tasks = await self.cluster.task_summary(service)
        load: Load | str
        if state.replicas == 0 or woken:
            load = "asleep"
        elif self.loads is None:
            load = "no Prometheus is configured (AIART_PROMETHEUS_URL)"
        else:
            load = await self.loads.load(meta.name, meta.version, scaling)
            asked = self._asked.get((meta.name, meta.version), float("-inf"))
            if isinstance(load, Load) and now - asked < scaling.idle_seconds:
                load = replace(load, recent=max(load.recent, 1.0))
        move = decide(scaling, state, load, ready=tasks.running, now=now, woken=woken)
        if move.state.replicas == 0 and rolling:
            # A rollout's split names this version's service, which has no
            # route at zero: both versions stay up while it runs.
            return await self._write(plan, state, Move(
                replace(state, sleep_at=None), "kept awake while its rollout runs", "load"))
        return await self._write(plan, state, paced(state, move, now=now, lead=self.sleep_lead))

    async def _write(self, plan: VersionPlan, state: ScaleState, move: Move) -> Move:
        """``move`` into the version's labels, where it changes what they say."""
        assert plan.manifest is not None
        meta = plan.manifest.metadata
        if not worth_writing(plan.config.labels, move):
            return move
        wanted = state_labels(plan.config.labels, move.state, move.reason, move.kind)
        if await self.cluster.update_config_labels(plan.config, wanted) is None:
            return move  # changed meanwhile: the next tick decides on the fresh labels
        if move.state.replicas != state.replicas:
            log.info("%s version %s: %d -> %d replicas: %s", meta.name, meta.version,
                     state.replicas, move.state.replicas, move.reason)
            self.kick(meta.name)
        return move

    async def wake(self, model: str, version: str, token: str) -> WakeAnswer:
        """A request for ``model``/``version`` is held: wake it if it is at
        zero. ``token``: the gateway's token for that version, which only
        requests that came through its routes carry, so nobody else on the
        network can wake models (when model servers have tokens at all)."""
        expected = self.token_of(model, version)
        if expected and not hmac.compare_digest(token.encode(), expected.encode()):
            return WakeAnswer(403, "not a request the gateway held for this version")
        self._asked[(model, version)] = time.time()
        async with self._lock:
            configs = await self.cluster.list_model_configs(model)
            plan = next((p for p in _plans(configs) if p.manifest
                         and p.manifest.metadata.version == version), None)
            if plan is None or plan.manifest is None or plan.manifest.spec.scaling is None:
                return WakeAnswer(404, f"model {model} has no scalable version {version}")
            services = await self.cluster.list_services(model)
            service = next((s for s in services if s.labels.get(L.VERSION) == version), None)
            if service is None:
                return WakeAnswer(404, f"version {version} of {model} is not deployed")
            move = await self._decide(plan, service, woken=True)
        addresses = await self.cluster.task_addresses(service, self.network)
        return WakeAnswer(202, move.reason, move.state.replicas, tuple(addresses))


def _in_rollouts(plans: list[VersionPlan]) -> set[tuple[str, str]]:
    """The (model, version) pairs a rollout under way routes to: its new
    version and its stable one."""
    out = set()
    for plan in plans:
        state = read_rollout(plan.config.labels)
        if plan.manifest is not None and state is not None and not state.done:
            model = plan.manifest.metadata.name
            out |= {(model, plan.manifest.metadata.version), (model, state.stable)}
    return out


def _plans(configs: list[ConfigObject]) -> list[VersionPlan]:
    by_model: dict[str, list[ConfigObject]] = {}
    for config in configs:
        by_model.setdefault(config.labels.get(L.MODEL, ""), []).append(config)
    return [plan for model, group in by_model.items() if model
            for plan in plan_versions(model, group) if plan.manifest is not None]
