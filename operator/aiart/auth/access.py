"""Who may call what: API keys, principals and the decisions on a model call.

Pure: no I/O. A key is ``aiart_<id>_<secret>``; aiart stores only the id and
the SHA-256 of the secret (a 256-bit random secret needs no slow hash: it
cannot be guessed from its digest), so a leaked key store grants nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

KEY_PATTERN = re.compile(r"^aiart_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
KEY_ID = re.compile(r"^[0-9a-f]{12}$")
KEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
SCOPE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9:._/-]{0,127}$")
ALL_MODELS = "*"
# Paths a health checker may read without a credential: liveness and
# readiness say nothing about a model's answers, and the operator and
# load balancers must be able to ask.
OPEN_PATHS = re.compile(
    r"^(/models/[a-z0-9-]+(/versions/[a-z0-9-]+)?)?"
    r"/v2(/health/(live|ready)|/models/[a-z0-9-]+(/versions/[a-z0-9-]+)?/ready)$")



class Role(StrEnum):
    """What a principal may do with aiart's API; every role may call the
    models in its scope."""

    VIEWER = "viewer"
    DEPLOYER = "deployer"
    ADMIN = "admin"


class AccessError(ValueError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """A stored API key: never the secret, only its digest."""

    id: str
    name: str
    role: Role
    models: tuple[str, ...]  # ("*",) for every model
    digest: str
    created: str

    def to_json(self) -> bytes:
        return json.dumps({"id": self.id, "name": self.name, "role": self.role.value,
                           "models": list(self.models), "sha256": self.digest,
                           "created": self.created}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, data: bytes) -> ApiKey:
        try:
            raw: Any = json.loads(data)
            return cls(id=str(raw["id"]), name=str(raw["name"]), role=Role(raw["role"]),
                       models=tuple(str(m) for m in raw["models"]), digest=str(raw["sha256"]),
                       created=str(raw["created"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise AccessError(f"not an API key record: {exc}") from None

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(self.digest, _digest(secret))

    def covers(self, model: str) -> bool:
        return ALL_MODELS in self.models or model in self.models


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key(name: str, role: Role, models: Sequence[str]) -> tuple[str, ApiKey]:
    """A new key: the text to hand to its user (shown once) and its record."""
    if not KEY_NAME.match(name):
        raise AccessError(f"key name {name!r}: letters, digits, '.', '_' or '-', at most 63")
    scopes = tuple(models) or (ALL_MODELS,)
    for model in scopes:
        if model != ALL_MODELS and not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", model):
            raise AccessError(f"model {model!r} is not a model name (or * for all)")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    record = ApiKey(id=key_id, name=name, role=role, models=scopes, digest=_digest(secret),
                    created=datetime.now(UTC).isoformat(timespec="seconds"))
    return f"aiart_{key_id}_{secret}", record


def stream_key(key: bytes, model: str, stream: str) -> tuple[str, ApiKey]:
    """A stream bridge's own API key (viewer of its model alone): derived from
    the probe key, so that the operator makes the same one on every pass and
    keeps no secret of its own; its record goes to the key store like any."""
    def derived(what: str) -> str:
        return hmac.new(key, f"stream-{what}:{model}/{stream}".encode(),
                        hashlib.sha256).hexdigest()
    key_id, secret = derived("id")[:12], derived("secret")[:43]
    record = ApiKey(id=key_id, name=stream_key_name(model, stream), role=Role.VIEWER,
                    models=(model,), digest=_digest(secret), created="")
    return f"aiart_{key_id}_{secret}", record


def stream_key_name(model: str, stream: str) -> str:
    return f"aiart-stream-{model}-{stream}"[:63]


def parse_key(text: str) -> tuple[str, str] | None:
    match = KEY_PATTERN.match(text.strip())
    return (match.group(1), match.group(2)) if match else None


# The dashboard's sign-in: the key in a cookie the page's scripts cannot read
# (HttpOnly), sent only to the dashboard and the API (a cookie per path:
# never to a model's routes, whose code would see it), over HTTPS, and never
# with another site's request (SameSite=Strict). A change also needs
# UI_HEADER, which a page of another site cannot add to a request without
# the API's consent (it gives none: no CORS).
KEY_COOKIE = "aiart_key"
UI_HEADER = "X-Aiart-UI"
COOKIE_PATHS = ("/ui", "/api/v1")
SAFE_METHODS = frozenset({"GET", "HEAD"})


def cookie_credential(method: str, headers: Mapping[str, str],
                      cookies: Mapping[str, str]) -> tuple[str, str] | None:
    """``("apikey", key)`` or ``("bearer", token)`` (an OIDC sign-in's) from
    the dashboard's cookie: for a read, or for a change that carries
    UI_HEADER; otherwise none."""
    value = cookies.get(KEY_COOKIE, "").strip()
    if not value or (method.upper() not in SAFE_METHODS and not headers.get(UI_HEADER.lower())):
        return None
    return ("apikey", value) if value.startswith("aiart_") else ("bearer", value)


def credential_from(headers: Mapping[str, str]) -> tuple[str, str] | None:
    """``("apikey", key)`` or ``("bearer", token)`` from request headers.

    Keys come as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``;
    anything else after ``Bearer`` is taken for a token."""
    key = headers.get("x-api-key", "").strip()
    if key:
        return "apikey", key
    scheme, _, value = headers.get("authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    value = value.strip()
    return ("apikey", value) if value.startswith("aiart_") else ("bearer", value)


@dataclass(frozen=True, slots=True)
class Decision:
    status: int  # 200, 401 or 403
    reason: str
    subject: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelPolicy:
    """What a model's manifest asks of its callers (``spec.auth``)."""

    model: str
    mode: str  # none, apikey or oidc
    scopes: tuple[str, ...] = field(default=())


def decide_with_key(policy: ModelPolicy, keys: Mapping[str, ApiKey], text: str, *,
                    admin_only: bool = False) -> Decision:
    """A key against a model; ``admin_only`` where a key stands in for a token."""
    parsed = parse_key(text)
    if parsed is None:
        return Decision(401, "the API key is malformed")
    key = keys.get(parsed[0])
    if key is None or not key.matches(parsed[1]):
        return Decision(401, "the API key is unknown or revoked")
    if not key.covers(policy.model):
        return Decision(403, f"the API key {key.name!r} does not cover model {policy.model!r}",
                        subject=f"apikey:{key.name}")
    if admin_only and key.role is not Role.ADMIN:
        return Decision(403, f"only an admin API key may call a model in {policy.mode} mode",
                        subject=f"apikey:{key.name}")
    return Decision(200, "ok", subject=f"apikey:{key.name}")


def decide_with_claims(policy: ModelPolicy, claims: Mapping[str, Any]) -> Decision:
    """A verified token's claims against the model's required scopes."""
    granted = set(str(claims.get("scope", "")).split())
    granted |= {str(s) for s in claims.get("scp", []) if isinstance(claims.get("scp"), list)}
    missing = [s for s in policy.scopes if s not in granted]
    subject = f"oidc:{claims.get('sub', '?')}"
    if missing:
        return Decision(403, f"the token lacks scope {', '.join(missing)}", subject=subject)
    return Decision(200, "ok", subject=subject)


def probe_token(key: bytes, model: str, version: str) -> str:
    """The probe credential of one model version."""
    return hmac.new(key, f"{model}/{version}".encode(), hashlib.sha256).hexdigest()


def key_feed(keys: Mapping[str, ApiKey]) -> tuple[str, bytes]:
    """What the gateway checks API keys against (its plugin, gateway/plugins):
    each key's id, name, role, models and digest, never a secret; and a tag
    of that content, the same from every replica of the auth service."""
    body = json.dumps({"keys": [
        {"id": k.id, "name": k.name, "role": k.role.value, "models": list(k.models),
         "sha256": k.digest} for k in sorted(keys.values(), key=lambda k: k.id)]},
        sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(body).hexdigest()[:32], body


def gateway_token(key: bytes, model: str, version: str) -> str:
    """What the gateway's routes to one model version hand its server
    (``X-Aiart-Gateway``), which answers no one else: a neighbour on the
    model network holds at most its own version's. Made with the probe key,
    over a message no probe token signs (no model name holds a colon), so
    neither kind of token gives the other away."""
    return hmac.new(key, f"gateway:{model}/{version}".encode(), hashlib.sha256).hexdigest()


def decide_probe(key: bytes | None, model: str, version: str, header: str) -> Decision | None:
    """200 when ``header`` (comma-separated tokens) holds this version's probe
    token; None (decide as for anyone else) otherwise."""
    if not key or not version or not header:
        return None
    expected = probe_token(key, model, version)
    if any(hmac.compare_digest(expected, token.strip()) for token in header.split(",")):
        return Decision(200, "ok", subject="aiart-probe")
    return None
