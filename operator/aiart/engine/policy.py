"""What aiart's services other than the operator may ask of the Docker Engine.

None of them holds the engine's socket: whoever holds it is root on the
node, and each faces the network. aiart's engine proxy (``proxy.py``) gives
each a socket of its own and passes on only the calls its work needs:

- the auth service lists configs, filtered to the API key records;
- the API lists configs (filtered by an ``aiart.*`` label) and aiart's
  services (filtered to ``aiart.managed-by=aiart``), reads a config's
  labels (not its data) and a model service's logs, creates the configs a
  deployment is (a model version, an uploaded artifact) and removes them
  again, and sets or clears one label on a model version's config, the
  command of its rollout (``aiart.rollout.command``: promote, abort), the
  engine proxy filling in the rest of the config as it is; and writes and
  removes the key records of viewers and deployers (an admin's, made with
  ``aiart keys create`` on a manager, it can neither write nor remove);
- the gateway (Traefik's swarm provider) and Prometheus (its Swarm service
  discovery) read services, tasks, networks and nodes, and see the services
  and tasks without their containers' environment, which holds other
  services' credentials (a model's store keys) and which neither needs.

Everything else (containers, services, secrets, images, nodes, exec, an
admin's key record written or removed) is refused. This module is the decision alone;
the proxy does the I/O.

Pure: no I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

from aiart.core import labels as L
from aiart.core import rollout
from aiart.core.render import GATEWAY_HEADER

# The route label that hands a model server its gateway token (core/render.py).
_GATEWAY_TOKEN_LABEL = f".customrequestheaders.{GATEWAY_HEADER}"


class Client(Enum):
    AUTH = "auth"
    API = "api"
    GATEWAY = "gateway"
    MONITORING = "monitoring"


# Docker's object ids and names: no '/', no '%', nothing a path could hide in.
_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
_VERSIONED = re.compile(r"^/v\d+\.\d+(/.*)$")
# (method, path pattern) -> the clients that may make the call.
_ALL, _API = tuple(Client), (Client.API,)
# The clients that watch the swarm to find their routes or targets.
_WATCHERS = (Client.GATEWAY, Client.MONITORING)
_READS: list[tuple[str, re.Pattern[str], frozenset[Client]]] = [
    (method, re.compile(pattern), frozenset(clients))
    for method, pattern, clients in [
        ("GET", r"/_ping", _ALL),
        ("HEAD", r"/_ping", _ALL),
        ("GET", r"/version", _ALL),
        ("GET", r"/configs", (Client.AUTH, Client.API)),
        ("GET", rf"/configs/{_ID}", _API),
        ("GET", r"/services", (Client.API, *_WATCHERS)),
        ("GET", rf"/services/{_ID}/logs", _API),
        ("GET", r"/tasks", _WATCHERS),
        ("GET", r"/networks", _WATCHERS),
        ("GET", rf"/networks/{_ID}", _WATCHERS),
        ("GET", r"/nodes", _WATCHERS),
        ("GET", rf"/nodes/{_ID}", _WATCHERS),
    ]
]
_CONFIG = re.compile(rf"^/configs/({_ID})$")
_CONFIG_UPDATE = re.compile(rf"^/configs/({_ID})/update$")
_LOGS = re.compile(rf"^/services/({_ID})/logs$")
# A list must be filtered by one of these labels (Docker ANDs label filters,
# so nothing without it is listed): (client, path) -> label, or label prefix.
_LIST_FILTERS = {
    (Client.AUTH, "/configs"): L.API_KEY,
    (Client.API, "/configs"): "aiart.",
    (Client.API, "/services"): f"{L.MANAGED_BY}={L.MANAGED_BY_VALUE}",
}
# Lists the engine filters for a client before it answers, whatever the
# client asked: the gateway routes only services labelled so (stack.yml:
# exposedByDefault=false), but Traefik reads every service each second and
# then each one's tasks. Narrowed here, the engine and this proxy are spared
# a task listing per service it would drop (most of the stack's own), every
# second; Traefik sees no difference.
_NARROWED = {(Client.GATEWAY, "/services"): "traefik.enable=true"}
# The labels that make a config part of a deployment the API may write:
# a model version, an artifact uploaded for one, or a batch job. Key
# records are not.
DEPLOYMENT_LABELS = (L.MODEL, L.ARTIFACT_OF, L.JOB)
# The key records the API may write and remove: the dashboard's admin makes
# and revokes viewers' and deployers' keys through it. A break-in into the
# API can declare and remove any model version already, which is all a
# deployer's key could add; an admin's key is made on a manager only.
API_KEY_ROLES = ("viewer", "deployer")
_KEY_LABELS = {L.API_KEY, L.API_KEY_NAME, L.API_KEY_ROLE}
_KEY_FIELDS = {"id", "name", "role", "models", "sha256", "created"}
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
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
    # The answer goes back rewritten by ``rewritten`` (a config without its
    # data, services and tasks without their environment).
    rewrite: bool = False
    # Set for a config's update: the proxy reads the config whole, then asks
    # ``command_update`` what to send instead of the body it was given.
    update: bool = False
    # The path and query the engine is sent instead of the client's (a list
    # narrowed by a filter the client did not ask for).
    path: str | None = None


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
            if (client, path) in _NARROWED:
                return _narrowed(raw_path, _NARROWED[(client, path)],
                                 rewrite=_rewritten_for(client, path))
            logs = _LOGS.match(path)
            return Verdict(True, service=logs.group(1) if logs else None,
                           rewrite=_rewritten_for(client, path))
    else:
        if client is Client.API and method == "POST" and path == "/configs/create":
            return _creation(body)
        removal = _CONFIG.match(path)
        if client is Client.API and method == "DELETE" and removal:
            return Verdict(True, config=removal.group(1))
        update = _CONFIG_UPDATE.match(path)
        if client is Client.API and method == "POST" and update:
            return Verdict(True, config=update.group(1), update=True)
    return Verdict(False, f"the {client.value} service may not {method} {unquote(path)}")


def _rewritten_for(client: Client, path: str) -> bool:
    if client is Client.API:
        return _CONFIG.match(path) is not None
    return client in _WATCHERS and path in ("/services", "/tasks")


def rewritten(path: str, answer: Any, client: Client) -> Any:
    """What a client sees of a read its verdict marked ``rewrite``: a single
    config without its data (the API looks a config up for its labels only,
    and any config may be named to it); services and tasks without their
    containers' environment, for the watchers (the spec now and the one
    before an update); and for Prometheus, services without the route label
    that holds a model's gateway token (it is on the model network, and
    with the token could call the model as the gateway does)."""
    if _CONFIG.match(path):
        if isinstance(answer, dict) and isinstance(answer.get("Spec"), dict):
            answer["Spec"].pop("Data", None)
        return answer
    for item in answer if isinstance(answer, list) else ():
        if not isinstance(item, dict):
            continue
        for spec in (item.get("Spec"), item.get("PreviousSpec")):
            if not isinstance(spec, dict):
                continue
            labels = spec.get("Labels")
            if client is not Client.GATEWAY and isinstance(labels, dict):
                spec["Labels"] = {k: v for k, v in labels.items()
                                  if not k.endswith(_GATEWAY_TOKEN_LABEL)}
            # A service's spec holds a task template; a task's spec is one.
            template = spec.get("TaskTemplate", spec)
            container = template.get("ContainerSpec") if isinstance(template, dict) else None
            if isinstance(container, dict):
                container.pop("Env", None)
    return answer


def vanished(path: str, status: int) -> bool:
    """A watcher's task listing the engine answers "not found": a filter
    names a service (or node) removed since the watcher listed services.
    It has no tasks, and is answered so: the gateway reads the swarm a
    service at a time, and one such error fails its whole read, which it
    then retries with a growing pause while its routes go stale (a task
    stopped a moment ago is still sent requests), however many services
    come and go beside it."""
    return path == "/tasks" and status == 404


def _filtered(client: Client, path: str, raw_path: str) -> Verdict:
    wanted = _LIST_FILTERS[(client, path)]
    try:
        _, labels = _label_filters(raw_path)
    except ValueError:
        labels = []
    if any(_matches(label, wanted) for label in labels):
        return Verdict(True)
    return Verdict(False, f"the {client.value} service lists {path} only filtered by the "
                          f"label {wanted}{'*' if wanted.endswith('.') else ''}")


def _label_filters(raw_path: str) -> tuple[dict[str, Any], list[str]]:
    """The request's filters and, in list form, its label filters; ValueError
    when they are not the engine's JSON."""
    filters = json.loads(parse_qs(urlsplit(raw_path).query).get("filters", ["{}"])[0])
    if not isinstance(filters, dict):
        raise ValueError("filters are not a JSON object")
    labels = filters.get("label", [])
    # The engine takes both ["k=v", ...] and {"k=v": true, ...}.
    labels = [k for k, on in labels.items() if on] if isinstance(labels, dict) else labels
    if not isinstance(labels, list) or not all(isinstance(k, str) for k in labels):
        raise ValueError("label filters are not strings")
    return filters, labels


def _narrowed(raw_path: str, label: str, rewrite: bool) -> Verdict:
    try:
        filters, labels = _label_filters(raw_path)
    except ValueError as exc:
        return Verdict(False, f"the list's filters cannot be read: {exc}")
    head, _, query = raw_path.partition("?")
    params = [(key, value) for key, values in parse_qs(query, keep_blank_values=True).items()
              if key != "filters" for value in values]
    filters["label"] = [*labels, label] if label not in labels else labels
    params.append(("filters", json.dumps(filters, separators=(",", ":"))))
    return Verdict(True, rewrite=rewrite, path=f"{head}?{urlencode(params)}")


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
    if _is_key_record(labels):
        if key_problem := _key_record_problem(spec, labels):
            return Verdict(False,
                           f"the api service may not create this key record: {key_problem}")
        return Verdict(True)
    if any(str(k) == L.PACKAGE_KEY or str(k).startswith(f"{L.PACKAGE_KEY}.") for k in labels):
        # A key the swarm trusts model packages from: a manager's CLI alone
        # adds one (aiart trust), even on a config that is also a deployment.
        return Verdict(False, "the api service may not create a trusted package key")
    foreign = sorted(str(k) for k in labels if not str(k).startswith("aiart."))
    if problem := _deployment_problem(labels) or (
            foreign and f"labels outside aiart.*: {', '.join(foreign)}"):
        return Verdict(False, f"the api service may not create this config: {problem}")
    return Verdict(True)


def may_remove(labels: dict[str, str]) -> Verdict:
    """Whether the API may remove a config that carries ``labels`` (a user's
    own labels beside aiart's do not keep a model version from removal)."""
    if _is_key_record(labels) and not any(label in labels for label in DEPLOYMENT_LABELS):
        role = labels.get(L.API_KEY_ROLE, "")
        if role not in API_KEY_ROLES:
            return Verdict(False, f"the api service may not remove this key record: its role "
                                  f"is {role or 'not said'}, and an admin's key is revoked "
                                  "on a manager")
        return Verdict(True)
    if problem := _deployment_problem(labels):
        return Verdict(False, f"the api service may not remove this config: {problem}")
    return Verdict(True)


def _is_key_record(labels: dict[str, Any]) -> bool:
    return any(str(k) == L.API_KEY or str(k).startswith(f"{L.API_KEY}.") for k in labels)


def _key_record_problem(spec: dict[str, Any], labels: dict[str, Any]) -> str:
    """What keeps a key record from being one the API may write: a viewer's
    or deployer's record (auth/access.py ApiKey), its labels saying what its
    data says, under its own name, and nothing else."""
    if set(labels) != _KEY_LABELS:
        return f"its labels must be {', '.join(sorted(_KEY_LABELS))} and no other"
    try:
        record: Any = json.loads(base64.b64decode(str(spec.get("Data", "")), validate=True))
    except (ValueError, binascii.Error):
        return "its data is not a key record's JSON"
    if not isinstance(record, dict) or set(record) != _KEY_FIELDS:
        return f"its data must hold {', '.join(sorted(_KEY_FIELDS))} and no other field"
    if record["role"] not in API_KEY_ROLES:
        return f"its role is {record['role']!r}; an admin's key is made on a manager"
    if not (isinstance(record["id"], str) and _KEY_ID.match(record["id"])
            and isinstance(record["sha256"], str) and _SHA256.match(record["sha256"])
            and isinstance(record["models"], list)
            and all(isinstance(m, str) for m in record["models"])):
        return "its id, digest or models are not a key record's"
    if (labels[L.API_KEY], labels[L.API_KEY_NAME], labels[L.API_KEY_ROLE]) != (
            record["id"], record["name"], record["role"]):
        return "its labels do not say what its data says"
    if spec.get("Name") != f"{L.API_KEY_CONFIG_PREFIX}{record['id']}":
        return f"it must be named {L.API_KEY_CONFIG_PREFIX}{record['id']}"
    return ""


def _deployment_problem(labels: dict[str, Any]) -> str:
    if not any(label in labels for label in DEPLOYMENT_LABELS):
        return ("it is not a model version, an artifact or a batch job "
                f"(no {' or '.join(DEPLOYMENT_LABELS)})")
    if _is_key_record(labels):
        return "it is an API key record"
    return ""


def command_update(current: dict[str, Any], body: bytes) -> tuple[Verdict, bytes]:
    """Whether the API may update a config whose spec is ``current`` as
    ``body`` asks, and the body to send the engine: the config as it is, its
    labels changed in the rollout's command alone. The API reads configs
    without their data; the data sent is the config's own, so the API can
    neither see nor change it."""
    labels = current.get("Labels") or {}
    try:
        wanted: Any = json.loads(body).get("Labels")
        if not isinstance(wanted, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in wanted.items()):
            raise TypeError
    except (ValueError, TypeError, AttributeError):
        return Verdict(False, "a config's update must be a JSON object with Labels"), b""
    if L.MODEL not in labels or _deployment_problem(labels):
        return Verdict(False, "the api service may update a model version's config only"), b""
    changed = sorted(k for k in {*labels, *wanted} if labels.get(k) != wanted.get(k))
    if [k for k in changed if k != rollout.COMMAND]:
        return Verdict(False, f"the api service may change only the label {rollout.COMMAND} "
                              f"of a config, not {', '.join(k for k in changed)}"), b""
    if rollout.COMMAND in wanted and wanted[rollout.COMMAND] not in rollout.COMMANDS:
        return Verdict(False, f"{rollout.COMMAND} must be one of "
                              f"{', '.join(rollout.COMMANDS)}"), b""
    spec = {"Name": current.get("Name"), "Labels": wanted, "Data": current.get("Data", "")}
    return Verdict(True), json.dumps(spec).encode()
