"""The gateway's routes for rollouts in progress and for scalable versions,
served to Traefik's HTTP provider (``--providers.http.endpoint``,
stack.yml); and ``POST /wake/<model>/<version>``, where the activator asks
for a version at zero to be woken (control/autoscaler.py).

Each answer is computed from Docker state alone: the rollout labels on
model configs (written by reconcile passes, core/rollout.py) and the
services' routes. So an operator that restarts serves the same routes as
before at its first answer, with nothing to rebuild first; and while it is
away, Traefik keeps the last routes it read.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from aiohttp import web

from aiart.control.ports import Cluster
from aiart.core import labels as L
from aiart.core.objects import ConfigObject, ServiceObject
from aiart.core.plan import plan_versions
from aiart.core.render import GATEWAY_HEADER, carries_current_route, guard_of
from aiart.core.rollout import RolloutPhase, canary_weight, read_state
from aiart.core.scaling import read_state as read_scale
from aiart.core.settings import OperatorSettings
from aiart.core.spec import Runtime
from aiart.core.traffic import Split, Waker, dynamic_config

if TYPE_CHECKING:
    from aiart.control.autoscaler import Autoscaler

log = logging.getLogger("aiart.traffic")
# Traefik polls every second (stack.yml); one engine read serves a second's polls.
CACHE_SECONDS = 1.0


def splits_of(configs: Sequence[ConfigObject], services: Sequence[ServiceObject],
              settings: OperatorSettings, token_of: Callable[[str, str], str]) -> list[Split]:
    """Every model's split now. ``token_of(model, version)``: what that
    version's server takes as the gateway's token."""
    by_model: dict[str, list[ConfigObject]] = {}
    for config in configs:
        by_model.setdefault(config.labels.get(L.MODEL, ""), []).append(config)
    routed = {(s.labels.get(L.MODEL), s.labels.get(L.VERSION))
              for s in services if carries_current_route(dict(s.labels))}
    splits = []
    for model, model_configs in by_model.items():
        if not model or not any(read_state(c.labels) for c in model_configs):
            continue
        plans = [p for p in plan_versions(model, model_configs) if p.manifest is not None]
        manifests = {p.manifest.metadata.version: p.manifest for p in plans if p.manifest}
        for plan in plans:
            state, new = read_state(plan.config.labels), plan.manifest
            if state is None or new is None or new.spec.rollout is None:
                continue
            stable = manifests.get(state.stable)
            version = new.metadata.version
            if stable is None or state.phase is RolloutPhase.ABORTED:
                continue
            if state.phase is RolloutPhase.PROMOTED and (model, version) in routed and (
                    model, state.stable) not in routed:
                # Its own current routes have taken over. Not before the stable
                # gave its up: the operator's hand-over probe may have seen the
                # new version through this split, and the gateway takes up new
                # labels and this feed separately; the split at 100 % bridges it.
                continue
            mirror = state.phase is RolloutPhase.SHADOWING
            images = (stable.spec.runtime, new.spec.runtime)
            splits.append(Split(
                model=model, stable=state.stable, new=version,
                mode="mirror" if mirror else "weighted",
                percent=(new.spec.rollout.mirror_percent if mirror
                         else canary_weight(new.spec.rollout, state)),
                guard=guard_of(stable, settings),
                tokens=(token_of(model, state.stable), token_of(model, version)),
                grpc=Runtime.IMAGE not in images))
    return splits


def wakers_of(configs: Sequence[ConfigObject], services: Sequence[ServiceObject],
              settings: OperatorSettings, token_of: Callable[[str, str], str],
              now: float | None = None) -> list[Waker]:
    """Every deployed scalable version's wake routes, as they rank ``now``."""
    now = time.time() if now is None else now
    deployed = {(s.labels.get(L.MODEL), s.labels.get(L.VERSION)): s for s in services}
    by_model: dict[str, list[ConfigObject]] = {}
    for config in configs:
        by_model.setdefault(config.labels.get(L.MODEL, ""), []).append(config)
    wakers = []
    for model, model_configs in by_model.items():
        for plan in plan_versions(model, model_configs) if model else []:
            manifest = plan.manifest
            if manifest is None or manifest.spec.scaling is None:
                continue
            version = manifest.metadata.version
            service = deployed.get((model, version))
            if service is None:
                continue
            state = read_scale(plan.config.labels)
            wakers.append(Waker(
                model=model, version=version,
                asleep=state is not None and state.held(now),
                current=carries_current_route(dict(service.labels)),
                guard=guard_of(manifest, settings), token=token_of(model, version),
                hold_seconds=manifest.spec.scaling.activation_seconds,
                grpc=manifest.spec.runtime is not Runtime.IMAGE))
    return wakers


class TrafficFeed:
    """``GET /traefik``: the dynamic configuration of every split and every
    scalable version's wake routes; ``POST /wake/<model>/<version>``."""

    def __init__(self, cluster: Cluster, settings: OperatorSettings,
                 token_of: Callable[[str, str], str],
                 autoscaler: Autoscaler | None = None) -> None:
        self.cluster = cluster
        self.settings = settings
        self.token_of = token_of
        self.autoscaler = autoscaler
        self._cached: tuple[float, bytes] | None = None

    async def body(self) -> bytes:
        now = time.monotonic()
        if self._cached is not None and now - self._cached[0] < CACHE_SECONDS:
            return self._cached[1]
        configs = await self.cluster.list_model_configs()
        services = await self.cluster.list_services()
        splits = splits_of(configs, services, self.settings, self.token_of)
        wakers = wakers_of(configs, services, self.settings, self.token_of)
        config = dynamic_config(splits, entrypoints=self.entrypoints(),
                                host=self.settings.gateway_host, wakers=wakers,
                                activator_url=self.settings.activator_url,
                                activator_grpc_url=self.settings.activator_grpc_url)
        body = json.dumps(config, sort_keys=True).encode()
        self._cached = (now, body)
        return body

    def entrypoints(self) -> list[str]:
        return [e.strip() for e in self.settings.entrypoint.split(",") if e.strip()]

    async def handle(self, _: web.Request) -> web.Response:
        try:
            body = await self.body()
        except Exception as exc:  # the engine away: Traefik keeps its last routes
            log.warning("cannot compute the gateway's rollout routes: %s", exc)
            return web.json_response({"error": str(exc)}, status=503)
        return web.Response(body=body, content_type="application/json")

    async def wake(self, request: web.Request) -> web.Response:
        if self.autoscaler is None:
            return web.json_response({"error": "this operator scales nothing"}, status=404)
        model, version = request.match_info["model"], request.match_info["version"]
        token = request.headers.get(GATEWAY_HEADER, "")
        try:
            answer = await self.autoscaler.wake(model, version, token)
        except Exception as exc:  # the engine away: the activator asks again
            log.warning("cannot wake %s version %s: %s", model, version, exc)
            return web.json_response({"error": str(exc)}, status=503)
        return web.json_response({"message": answer.message, "replicas": answer.replicas,
                                  "addresses": list(answer.addresses)}, status=answer.status)

    async def serve(self, port: int) -> web.AppRunner:
        app = web.Application()
        app.router.add_get("/traefik", self.handle)
        app.router.add_post("/wake/{model}/{version}", self.wake)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "0.0.0.0", port).start()
        return runner


