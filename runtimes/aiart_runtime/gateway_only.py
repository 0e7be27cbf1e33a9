"""Only the gateway may call a model: requests from any other address on
the model network (another model, a container a neighbour runs) are refused.

Every model sits on one overlay network with the gateway, so without this a
model's code could call its neighbours directly and skip their guard. The
check needs no secret: the gateway's tasks are found by their DNS name on
that network (``AIART_GATEWAY_HOSTS``), and a model container, which has
every capability dropped, cannot send from an address that is not its own.
Health, readiness and metrics stay open: the engine's health check calls
from inside the container, and Prometheus scrapes each task directly.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable

Resolver = Callable[[str], Awaitable[set[str]]]
OPEN_PATHS = re.compile(
    r"^/(metrics|v2/health/(live|ready)|v2/models/[^/]+(/versions/[^/]+)?/ready)$")
LOCAL = frozenset({"127.0.0.1", "::1"})


async def resolve(host: str) -> set[str]:
    try:
        found = await asyncio.get_running_loop().getaddrinfo(host, None,
                                                            type=socket.SOCK_STREAM)
    except OSError:
        return set()
    return {str(address[4][0]) for address in found}


class GatewayOnly:
    """Which client addresses may call the model, kept fresh: the gateway's
    tasks move (a restart, a lost node), so an unknown address makes it look
    again, at most once every ``every`` seconds."""

    def __init__(self, hosts: Iterable[str], *, resolver: Resolver = resolve,
                 every: float = 1.0) -> None:
        self.hosts = tuple(h for h in hosts if h)
        self.resolver = resolver
        self.every = every
        self.allowed: set[str] = set()
        self.looked_at = float("-inf")

    @classmethod
    def from_env(cls, value: str) -> GatewayOnly | None:
        hosts = [h.strip() for h in value.split(",") if h.strip()]
        return cls(hosts) if hosts else None

    async def allows(self, client: str, path: str) -> bool:
        if client in LOCAL or OPEN_PATHS.match(path) or client in self.allowed:
            return True
        # A look that found nothing (a task just started, its network's DNS
        # not answering yet) does not hold the next one back: otherwise the
        # gateway's first requests to a new task were refused for a second.
        if not self.allowed or time.monotonic() - self.looked_at >= self.every:
            self.looked_at = time.monotonic()
            found: set[str] = set()
            for host in self.hosts:
                found |= await self.resolver(host)
            self.allowed = found
        return client in self.allowed
