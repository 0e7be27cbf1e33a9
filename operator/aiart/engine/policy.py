"""What the auth service and the API may ask of the Docker Engine.

Neither holds the engine's socket: whoever holds it is root on the node, and
both face the network. aiart's engine proxy (``proxy.py``) gives each
a socket of its own and passes on only the calls its work needs:

- the auth service lists configs, filtered to the API key records;
- the API lists configs (filtered by an ``aiart.*`` label) and aiart's
  services (filtered to ``aiart.managed-by=aiart``), reads a config's
  labels (not its data) and a model service's logs, creates the configs a
  deployment is (a model version, an uploaded artifact) and removes them
  again.

Everything else (containers, services, secrets, images, nodes, exec, a key
record written or removed) is refused. This module is the decision alone;
the proxy does the I/O.

Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from aiart.core import labels as L


class Client(Enum):
    AUTH = "auth"
    API = "api"


# Docker's object ids and names: no '/', no '%', nothing a path could hide in.
_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
_VERSIONED = re.compile(r"^/v\d+\.\d+(/.*)$")
# (method, path pattern) -> the clients that may make the call.
_BOTH, _API = (Client.AUTH, Client.API), (Client.API,)
_READS: list[tuple[str, re.Pattern[str], frozenset[Client]]] = [
    (method, re.compile(pattern), frozenset(clients))
    for method, pattern, clients in [
        ("GET", r"/_ping", _BOTH),
        ("HEAD", r"/_ping", _BOTH),
        ("GET", r"/version", _BOTH),
        ("GET", r"/configs", _BOTH),
        ("GET", rf"/configs/{_ID}", _API),
        ("GET", r"/services", _API),
        ("GET", rf"/services/{_ID}/logs", _API),
    ]
]
_CONFIG = re.compile(rf"^/configs/({_ID})$")
_LOGS = re.compile(rf"^/services/({_ID})/logs$")
# A list must be filtered by one of these labels (Docker ANDs label filters,
# so nothing without it is listed): (client, path) -> label, or label prefix.
_LIST_FILTERS = {
    (Client.AUTH, "/configs"): L.API_KEY,
    (Client.API, "/configs"): "aiart.",
    (Client.API, "/services"): f"{L.MANAGED_BY}={L.MANAGED_BY_VALUE}",
}
# The labels that make a config part of a deployment the API may write:
# a model version, or an artifact uploaded for one. Key records are not.
DEPLOYMENT_LABELS = (L.MODEL, L.ARTIFACT_OF)
# The largest request body looked at: a config's data is at most 500 KB,
# base64 in JSON.
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""
    # Set for a removal: the config whose labels must show it is one the
    # client may remove (the proxy reads them, then asks may_remove).
    config: str | None = None
    # Set for logs: the service whose labels must show it is a model's (the
    # proxy reads them, then asks may_read_logs).
    service: str | None = None
    # The answer goes back without the config's data: the API looks a single
    # config up for its labels only (does it exist, whose artifact is it),
    # and any config may be named to it.
    without_data: bool = False


def engine_path(raw_path: str) -> str | None:
    """The engine's path without its API version prefix (``/v1.47``); None
    for a path that encodes or hides anything (``%``, ``..``, ``//``)."""
    path = raw_path.split("?", 1)[0]
    if "%" in path or "//" in path or "/../" in path or path.endswith("/.."):
        return None
    versioned = _VERSIONED.match(path)
    return versioned.group(1) if versioned else path


def decide(client: Client, method: str, raw_path: str, body: bytes) -> Verdict:
    path = engine_path(raw_path)
    if path is None:
        return Verdict(False, "the path holds an encoded or relative part")
    for allowed_method, pattern, clients in _READS:
        if method == allowed_method and pattern.fullmatch(path):
            if client not in clients:
                break
            if (client, path) in _LIST_FILTERS:
                return _filtered(client, path, raw_path)
            logs = _LOGS.match(path)
            return Verdict(True, service=logs.group(1) if logs else None,
                           without_data=client is Client.API and _CONFIG.match(path) is not None)
    else:
        if client is Client.API and method == "POST" and path == "/configs/create":
            return _creation(body)
        removal = _CONFIG.match(path)
        if client is Client.API and method == "DELETE" and removal:
            return Verdict(True, config=removal.group(1))
    return Verdict(False, f"the {client.value} service may not {method} {unquote(path)}")


def _filtered(client: Client, path: str, raw_path: str) -> Verdict:
    wanted = _LIST_FILTERS[(client, path)]
    try:
        filters: Any = json.loads(parse_qs(urlsplit(raw_path).query).get("filters", ["{}"])[0])
        labels = filters.get("label", []) if isinstance(filters, dict) else []
        # The engine takes both ["k=v", ...] and {"k=v": true, ...}.
        labels = [k for k, on in labels.items() if on] if isinstance(labels, dict) else labels
    except ValueError:
        labels = []
    if any(isinstance(label, str) and _matches(label, wanted) for label in labels):
        return Verdict(True)
    return Verdict(False, f"the {client.value} service lists {path} only filtered by the "
                          f"label {wanted}{'*' if wanted.endswith('.') else ''}")


def _matches(label: str, wanted: str) -> bool:
    if wanted.endswith("."):  # any label of that namespace
        return label.startswith(wanted)
    if "=" in wanted:  # that label with that value
        return label == wanted
    return label == wanted or label.startswith(f"{wanted}=")  # that label, any value


def may_read_logs(labels: dict[str, str]) -> Verdict:
    """Whether the API may read the logs of a service that carries ``labels``."""
    if L.MODEL in labels:
        return Verdict(True)
    return Verdict(False, "the api service may read the logs of model services only")


def _creation(body: bytes) -> Verdict:
    try:
        spec: Any = json.loads(body)
        labels = spec.get("Labels") or {}
        if not isinstance(labels, dict):
            raise TypeError
    except (ValueError, TypeError, AttributeError):
        return Verdict(False, "a config's creation must be a JSON object with Labels")
    foreign = sorted(str(k) for k in labels if not str(k).startswith("aiart."))
    if problem := _deployment_problem(labels) or (
            foreign and f"labels outside aiart.*: {', '.join(foreign)}"):
        return Verdict(False, f"the api service may not create this config: {problem}")
    return Verdict(True)


def may_remove(labels: dict[str, str]) -> Verdict:
    """Whether the API may remove a config that carries ``labels`` (a user's
    own labels beside aiart's do not keep a model version from removal)."""
    if problem := _deployment_problem(labels):
        return Verdict(False, f"the api service may not remove this config: {problem}")
    return Verdict(True)


def _deployment_problem(labels: dict[str, Any]) -> str:
    if not any(label in labels for label in DEPLOYMENT_LABELS):
        return f"it is not a model version or an artifact (no {' or '.join(DEPLOYMENT_LABELS)})"
    if any(str(k) == L.API_KEY or str(k).startswith(f"{L.API_KEY}.") for k in labels):
        return "it is an API key record"
    return ""
