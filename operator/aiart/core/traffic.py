"""The gateway's dynamic configuration for models whose traffic is split
between two versions (a canary's weights, a shadow's mirror). Pure: no I/O.

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
    PINNED_PRIORITY,
    Guard,
    guard_labels,
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


def dynamic_config(splits: Sequence[Split], *, entrypoints: Sequence[str],
                   host: str = "") -> dict[str, Any]:
    """Traefik's dynamic configuration (the HTTP provider's JSON) for every split."""
    http: dict[str, dict[str, Any]] = {"routers": {}, "services": {}, "middlewares": {}}
    for split in sorted(splits, key=lambda s: s.model):
        for kind, objects in split_config(split, entrypoints=entrypoints, host=host).items():
            http[kind].update(objects)
    # Traefik skips a configuration with nothing in it ("Skipping empty
    # configuration") and keeps the last one: without this unused middleware,
    # the last rollout's routes would outlive it.
    http["middlewares"][KEEPALIVE] = {"headers": {"customRequestHeaders": {"X-Aiart-Split": ""}}}
    # Nor does it take an empty section ("routers cannot be a standalone element").
    return {"http": {kind: objects for kind, objects in http.items() if objects}}
