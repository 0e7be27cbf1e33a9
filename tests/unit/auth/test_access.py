"""API keys and access decisions: what opens a model, and what does not."""

from __future__ import annotations

import pytest
from aiart.auth.access import (
    OPEN_PATHS,
    AccessError,
    ApiKey,
    ModelPolicy,
    Role,
    credential_from,
    decide_with_claims,
    decide_with_key,
    new_key,
    parse_key,
)


def test_a_new_key_is_stored_as_a_digest_only() -> None:
    text, record = new_key("ci", Role.DEPLOYER, ["iris"])
    key_id, secret = parse_key(text) or ("", "")
    assert key_id == record.id and secret not in record.to_json().decode()
    assert ApiKey.from_json(record.to_json()) == record
    assert record.matches(secret) and not record.matches(secret[:-1] + "x")
    assert new_key("all", Role.VIEWER, [])[1].models == ("*",)


@pytest.mark.parametrize(("name", "models"), [
    ("bad name", ["iris"]), ("", ["iris"]), ("ok", ["Iris"]), ("ok", ["a/../b"]),
])
def test_bad_key_requests_are_refused(name: str, models: list[str]) -> None:
    with pytest.raises(AccessError):
        new_key(name, Role.VIEWER, models)


def test_decisions_on_keys() -> None:
    text, record = new_key("ci", Role.VIEWER, ["iris"])
    keys = {record.id: record}
    iris = ModelPolicy(model="iris", mode="apikey")
    assert decide_with_key(iris, keys, text).status == 200
    assert decide_with_key(iris, keys, text).subject == "apikey:ci"
    assert decide_with_key(ModelPolicy(model="wine", mode="apikey"), keys, text).status == 403
    assert decide_with_key(iris, {}, text).status == 401  # revoked
    forged = text[:-1] + ("A" if text[-1] != "A" else "B")
    assert decide_with_key(iris, keys, forged).status == 401
    assert decide_with_key(iris, keys, "aiart_nope").status == 401
    # Where a key stands in for a token, only an admin key does.
    assert decide_with_key(iris, keys, text, admin_only=True).status == 403
    admin_text, admin = new_key("ops", Role.ADMIN, [])
    assert decide_with_key(iris, {admin.id: admin}, admin_text, admin_only=True).status == 200


def test_decisions_on_token_scopes() -> None:
    policy = ModelPolicy(model="iris", mode="oidc", scopes=("models:predict", "iris"))
    assert decide_with_claims(policy, {"sub": "u", "scope": "iris models:predict x"}).status == 200
    denied = decide_with_claims(policy, {"sub": "u", "scope": "iris"})
    assert (denied.status, denied.reason) == (403, "the token lacks scope models:predict")
    assert decide_with_claims(policy, {"sub": "u", "scp": ["iris", "models:predict"]}).status == 200


def test_credentials_from_headers() -> None:
    assert credential_from({"x-api-key": "aiart_k"}) == ("apikey", "aiart_k")
    assert credential_from({"authorization": "Bearer aiart_k"}) == ("apikey", "aiart_k")
    assert credential_from({"authorization": "bearer eyJ.x.y"}) == ("bearer", "eyJ.x.y")
    assert credential_from({"authorization": "Basic dTpw"}) is None
    assert credential_from({"authorization": "Bearer "}) is None
    assert credential_from({}) is None


@pytest.mark.parametrize(("path", "open_"), [
    ("/v2/health/ready", True),
    ("/v2/models/iris/ready", True),
    ("/v2/models/iris/versions/2/ready", True),
    ("/models/iris/versions/2/v2/models/iris/ready", True),
    ("/models/iris/v2/health/live", True),
    ("/v2/models/iris/infer", False),
    ("/v2/models/iris", False),  # metadata is the model's business
    ("/v2/models/iris/ready/../infer", False),
    ("/models/iris/predict", False),
])
def test_only_health_paths_are_open(path: str, open_: bool) -> None:
    assert bool(OPEN_PATHS.match(path)) is open_
