"""The gateway's dynamic configuration for models whose traffic is split
between two versions (a canary's weights, a shadow's mirror), and for
scalable versions, whose requests the activator holds while they are at
zero replicas. Pure: no I/O.

Swarm labels cannot say "90 % here, 10 % there" or "copy to there" (Traefik
issue 5673), so the operator serves Traefik these routes over its HTTP
provider (``operator/aiart/control/traffic_feed.py``). They are composed
over what the labels already define: each version's Traefik service
(``aiart_<m>_<v>@swarm``) and the stable version's guard middlewares (key
check or forwardAuth, rate limit), so a caller meets the same rules as on
the stable version's own routes. Their routers outrank the current
version's (``ROLLOUT_PRIORITY``), and stay under the pinned and versioned
ones: ``X-Aiart-Version`` and ``/versions/<v>`` still reach one version.
When the operator is away, Traefik keeps the last configuration it read;
when a rollout ends, its routes go and the labels' routes serve alone.

A Swarm service at zero replicas has no tasks, and Traefik's Swarm provider
drops its routes, middlewares and service with them. So a scalable version
has routes here too, under its own (``WAKE_PRIORITY``, and
``WAKE_VERSIONED_PRIORITY`` for its versioned paths): they catch its
requests exactly while the gateway has none of its tasks, behind the same
guard (defined here, since the labels' vanish with the tasks), and send
them to the activator with the version to wake in ``X-Aiart-Activate``.
No switch is flipped on a wake: the version's own routes win again as soon
as Traefik reads its first task. While a version goes to sleep, sleeps,
and for a while after a wake (``asleep``), its wake routes outrank its own
instead (``ASLEEP_PRIORITY``), so that the gateway sends its requests to the
activator before its task stops and until it has surely read the swarm
since, however late it reads it (core/scaling.py paced, WAKE_HOLD_SECONDS).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiart.core.render import (
    CREDENTIAL_HEADERS,
    CURRENT_PRIORITY_BASE,
    GATEWAY_HEADER,
    GRPC_MODEL_HEADER,
    GRPC_SERVICE_PREFIX,
    GRPC_VERSION_HEADER,
    PINNED_PRIORITY,
    PROBE_HEADER,
    VERSIONED_PRIORITY,
    Guard,
    guard_labels,
    guard_middlewares,
    prefix_rule,
    traefik_name,
)

# Above every current router (10,000 plus a version's creation order),
# under the pinned ones.
ROLLOUT_PRIORITY = 100_000
assert CURRENT_PRIORITY_BASE * 2 < ROLLOUT_PRIORITY < PINNED_PRIORITY
# A request larger than this is not mirrored (Traefik would hold it in memory
# to send it twice); it still reaches the stable version.
MIRROR_MAX_BODY_BYTES = 16 * 1024 * 1024
KEEPALIVE = "aiart_splits"
# Under every current router: a scalable version's own routes win whenever
# the gateway has one of its tasks.
WAKE_PRIORITY = 1_000
# Its versioned paths: above the current and rollout routers (whose
# prefixes match a versioned path too), under its own versioned routers.
WAKE_VERSIONED_PRIORITY = 200_000
assert WAKE_PRIORITY < CURRENT_PRIORITY_BASE
assert ROLLOUT_PRIORITY < WAKE_VERSIONED_PRIORITY < PINNED_PRIORITY < VERSIONED_PRIORITY
# Going to sleep or asleep: above every current router (a sleeping version
# takes part in no rollout), and above its own versioned ones.
ASLEEP_PRIORITY = 50_000
ASLEEP_VERSIONED_PRIORITY = 2_000_000
assert CURRENT_PRIORITY_BASE * 2 < ASLEEP_PRIORITY < ROLLOUT_PRIORITY
assert VERSIONED_PRIORITY < ASLEEP_VERSIONED_PRIORITY
ACTIVATOR = "aiart_activator"
ACTIVATOR_GRPC = "aiart_activator_grpc"
# "<model>/<version>/<seconds to hold>": set by the wake routes (a caller's
# own value never passes), read by the activator (aiart/activator).
ACTIVATE_HEADER = "X-Aiart-Activate"
# A request that carries it never wakes a sleeping model: the operator's
# probes send it, and so may a caller's health checker (docs/scaling.md).
NO_WAKE_HEADER = "X-Aiart-No-Wake"


@dataclass(frozen=True, slots=True, kw_only=True)
class Split:
    """One model's traffic between its stable version and a new one."""

    model: str
    stable: str
    new: str
    # "weighted": ``percent`` of requests to the new version, the rest to the
    # stable; "mirror": every request to the stable, a copy of ``percent`` of
    # them to the new version, whose answers nobody sees.
    mode: str
    percent: int
    guard: Guard  # the stable version's
    # What each version's server takes as the gateway's token (empty: none).
    tokens: tuple[str, str] = ("", "")
    grpc: bool = True  # both versions serve gRPC (aiart's runtimes)

    @property
    def prefix(self) -> str:
        # Objects of the HTTP provider live in a namespace of their own
        # (``@http``): no version's ``@swarm`` objects can be redefined.
        return f"aiart_{self.model}_split"


def _service(split: Split, suffix: str = "") -> dict[str, Any]:
    stable = f"{traefik_name(split.model, split.stable)}{suffix}@swarm"
    new = f"{traefik_name(split.model, split.new)}{suffix}@swarm"
    if split.mode == "mirror":
        return {"mirroring": {"service": stable, "maxBodySize": MIRROR_MAX_BODY_BYTES,
                              "mirrors": [{"name": new, "percent": split.percent}]}}
    weights = ((stable, 100 - split.percent), (new, split.percent))
    return {"weighted": {"services": [{"name": service, "weight": weight}
                                      for service, weight in weights if weight > 0]}}


def split_config(split: Split, *, entrypoints: Sequence[str], host: str = "") -> dict[str, Any]:
    """The routers, services and middlewares of one model's split."""
    name, prefix = split.model, split.prefix
    _, chain = guard_labels(name, split.stable, split.guard)
    guard = [f"{m}@swarm" for m in chain]
    tokens = ",".join(t for t in split.tokens if t)
    middlewares: dict[str, Any] = {
        # As on each version's routes (render.route_labels): no model sees a
        # credential; both servers find their token.
        f"{prefix}_nocred": {"headers": {"customRequestHeaders": {
            **dict.fromkeys(CREDENTIAL_HEADERS, ""), GATEWAY_HEADER: tokens}}},
        f"{prefix}_strip": {"stripPrefix": {"prefixes": [f"/models/{name}"]}},
    }
    retry = f"{traefik_name(name, split.stable)}_retry@swarm"
    routers: dict[str, Any] = {}
    for router, path, extra in ((f"{prefix}_v2", f"/v2/models/{name}", []),
                                (f"{prefix}_base", f"/models/{name}", [f"{prefix}_strip"])):
        routers[router] = {
            "rule": prefix_rule(path, host), "priority": ROLLOUT_PRIORITY,
            "entryPoints": list(entrypoints), "service": prefix,
            "middlewares": [*guard, f"{prefix}_nocred", *extra, retry]}
    services: dict[str, Any] = {prefix: _service(split)}
    if split.grpc:
        rule = f"PathPrefix(`{GRPC_SERVICE_PREFIX}`) && Header(`{GRPC_MODEL_HEADER}`, `{name}`)"
        routers[f"{prefix}_grpc"] = {
            "rule": f"Host(`{host}`) && ({rule})" if host else rule,
            "priority": ROLLOUT_PRIORITY, "entryPoints": list(entrypoints),
            "service": f"{prefix}_grpc", "middlewares": [*guard, f"{prefix}_nocred", retry]}
        services[f"{prefix}_grpc"] = _service(split, "_grpc")
    return {"routers": routers, "services": services, "middlewares": middlewares}


@dataclass(frozen=True, slots=True, kw_only=True)
class Waker:
    """A scalable version's routes to the activator."""

    model: str
    version: str
    current: bool  # it takes the model's unversioned routes
    guard: Guard
    token: str = ""  # what its server takes as the gateway's token
    hold_seconds: int = 30
    grpc: bool = True  # it serves gRPC (aiart's runtimes), held too
    # Going to sleep, at zero, or just woken: its wake routes outrank its own.
    asleep: bool = False

    @property
    def prefix(self) -> str:
        return f"{traefik_name(self.model, self.version)}_wake"

    @property
    def priorities(self) -> tuple[int, int]:
        """Its wake routes' priorities: unversioned paths, versioned ones."""
        if self.asleep:
            return ASLEEP_PRIORITY, ASLEEP_VERSIONED_PRIORITY
        return WAKE_PRIORITY, WAKE_VERSIONED_PRIORITY


def wake_config(waker: Waker, *, entrypoints: Sequence[str], host: str = ""
                ) -> dict[str, Any]:
    """The routers and middlewares of one version's wake routes (the
    activator's service is shared: ``dynamic_config``)."""
    name, version, prefix = waker.model, waker.version, waker.prefix
    guarding, chain = guard_middlewares(name, version, waker.guard)
    middlewares: dict[str, Any] = {
        f"{prefix}_{m}": definition for m, definition in guarding.items()}
    middlewares[f"{prefix}_headers"] = {"headers": {"customRequestHeaders": {
        **dict.fromkeys(CREDENTIAL_HEADERS, ""), GATEWAY_HEADER: waker.token,
        ACTIVATE_HEADER: f"{name}/{version}/{waker.hold_seconds}"}}}
    unversioned, versioned = waker.priorities
    paths = [(f"/v2/models/{name}/versions/{version}", versioned, False),
             (f"/models/{name}/versions/{version}", versioned, True)]
    if waker.current:
        paths += [(f"/v2/models/{name}", unversioned, False),
                  (f"/models/{name}", unversioned, True)]
    routers: dict[str, Any] = {}
    for index, (path, priority, strip) in enumerate(paths):
        extra = []
        if strip:
            middlewares[f"{prefix}_strip{index}"] = {"stripPrefix": {"prefixes": [path]}}
            extra.append(f"{prefix}_strip{index}")
        # The operator's probes are not requests to hold: at zero they find
        # no route, at once, instead of waking the version.
        rule = (f"({prefix_rule(path, host)}) && !HeaderRegexp(`{PROBE_HEADER}`, `.+`)"
                f" && !HeaderRegexp(`{NO_WAKE_HEADER}`, `.+`)")
        routers[f"{prefix}{index}"] = {
            "rule": rule, "priority": priority, "entryPoints": list(entrypoints),
            "service": ACTIVATOR,
            "middlewares": [*(f"{prefix}_{m}" for m in chain), f"{prefix}_headers", *extra]}
    if waker.grpc:
        base = f"PathPrefix(`{GRPC_SERVICE_PREFIX}`) && Header(`{GRPC_MODEL_HEADER}`, `{name}`)"
        rules = [(f"{base} && Header(`{GRPC_VERSION_HEADER}`, `{version}`)", versioned)]
        if waker.current:
            rules.append((base, unversioned))
        for index, (rule, priority) in enumerate(rules):
            rule = f"({rule}) && !HeaderRegexp(`{NO_WAKE_HEADER}`, `.+`)"
            routers[f"{prefix}_grpc{index}"] = {
                "rule": f"Host(`{host}`) && ({rule})" if host else rule,
                "priority": priority, "entryPoints": list(entrypoints),
                "service": ACTIVATOR_GRPC,
                "middlewares": [*(f"{prefix}_{m}" for m in chain), f"{prefix}_headers"]}
    return {"routers": routers, "middlewares": middlewares}


def dynamic_config(splits: Sequence[Split], *, entrypoints: Sequence[str],
                   host: str = "", wakers: Sequence[Waker] = (),
                   activator_url: str = "", activator_grpc_url: str = "") -> dict[str, Any]:
    """Traefik's dynamic configuration (the HTTP provider's JSON) for every
    split and every scalable version."""
    http: dict[str, dict[str, Any]] = {"routers": {}, "services": {}, "middlewares": {}}
    for split in sorted(splits, key=lambda s: s.model):
        for kind, objects in split_config(split, entrypoints=entrypoints, host=host).items():
            http[kind].update(objects)
    if wakers and activator_url:
        for waker in sorted(wakers, key=lambda w: (w.model, w.version)):
            for kind, objects in wake_config(waker, entrypoints=entrypoints,
                                             host=host).items():
                http[kind].update(objects)
        http["services"][ACTIVATOR] = {"loadBalancer": {"servers": [{"url": activator_url}]}}
        if any(w.grpc for w in wakers):
            http["services"][ACTIVATOR_GRPC] = {"loadBalancer": {"servers": [
                {"url": activator_grpc_url or "h2c://activator:8091"}]}}
    # Traefik skips a configuration with nothing in it ("Skipping empty
    # configuration") and keeps the last one: without this unused middleware,
    # the last rollout's routes would outlive it.
    http["middlewares"][KEEPALIVE] = {"headers": {"customRequestHeaders": {"X-Aiart-Split": ""}}}
    # Nor does it take an empty section ("routers cannot be a standalone element").
    return {"http": {kind: objects for kind, objects in http.items() if objects}}
