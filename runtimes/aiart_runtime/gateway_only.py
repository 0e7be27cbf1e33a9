"""Only the gateway may call a model: requests from anyone else on the model
network (another model, a container a neighbour runs) are refused.

Every model sits on one overlay network with the gateway, so without this a
model's code could call its neighbours directly and skip their guard. The
gateway's routes to a version add a token made for that version alone
(``X-Aiart-Gateway``, replacing whatever a caller sent); the operator hands
the server the same value (``AIART_GATEWAY_TOKEN``). A neighbour holds at
most its own version's token.

Not the caller's address: an earlier check allowed the addresses that the
gateway's name resolved to on the model network, but the swarm's DNS on a
node can go on answering a task's old address long after the task moved
(moby/moby#42833, #33952; seen here after an engine restart), and a model
then refused the gateway for minutes. A token does not depend on any
node's view of the swarm.

While a model's traffic is split between two of its versions (a canary or
a shadow: operator/aiart/core/traffic.py), one route leads to both, and the
gateway hands both tokens, comma-separated; each server looks for its own.
Both versions are the same model, under one deployer's key: the new one
learns the old one's token only while the rollout runs.

Health, readiness and metrics stay open: the engine's health check calls
from inside the container, and Prometheus scrapes each task directly.
"""

from __future__ import annotations

import hmac
import re

HEADER = b"x-aiart-gateway"
OPEN_PATHS = re.compile(
    r"^/(metrics|v2/health/(live|ready)|v2/models/[^/]+(/versions/[^/]+)?/ready)$")
LOCAL = frozenset({"127.0.0.1", "::1"})


class GatewayOnly:
    """Whether a request may be answered: it carries the gateway's token,
    asks for an open path, or comes from inside the container."""

    def __init__(self, token: str) -> None:
        self.token = token.encode()

    @classmethod
    def from_env(cls, value: str) -> GatewayOnly | None:
        return cls(value.strip()) if value.strip() else None

    def allows(self, client: str, path: str, presented: bytes | None) -> bool:
        if client in LOCAL or OPEN_PATHS.match(path):
            return True
        if presented is None:
            return False
        # Compared in full, each: no early exit tells a caller how much it guessed.
        return any([hmac.compare_digest(part.strip(), self.token)
                    for part in presented.split(b",")])
