"""A deployer stays in their lane: names chosen to collide with a
neighbour's routes or service neither take them over nor knock them out.
Against the real engine, Traefik and operator."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import Models, aiart, manifest, wait_for

ROW = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64",
                   "data": [5.1, 3.5, 1.4, 0.2]}]}


def answered_by(gateway: httpx.Client, path: str) -> str | None:
    answer = gateway.post(path, json=ROW)
    return answer.json().get("model_name") if answer.status_code == 200 else None


def test_router_names_cannot_collide_across_models(
        models: Models, iris_pickle: bytes, gateway: httpx.Client) -> None:
    # "shop" version "1" is current; "shop-1" version "current" once named
    # the same Traefik routers as shop's current routes.
    shop = models.name("shop")
    neighbour = f"{shop}-1"
    models.names.add(neighbour)
    models.wait_status(models.declare(shop, "1", iris_pickle), "Ready")
    assert answered_by(gateway, f"/v2/models/{shop}/infer") == shop
    models.wait_status(models.declare(neighbour, "current", iris_pickle), "Ready")
    # Routes settle within Traefik's refresh; then both answer, each as itself.
    wait_for(lambda: answered_by(gateway, f"/v2/models/{neighbour}/versions/current/infer")
             == neighbour, 30, "the neighbour's versioned route")
    for _ in range(3):
        assert answered_by(gateway, f"/v2/models/{shop}/infer") == shop
        assert answered_by(gateway, f"/v2/models/{shop}/versions/1/infer") == shop
        assert answered_by(gateway, f"/models/{shop}/v2/models/{shop}/infer") == shop


def test_a_service_name_taken_by_another_model_is_refused_clearly(
        models: Models, iris_pickle: bytes, gateway: httpx.Client) -> None:
    # Model "a-b" version "c" and model "a" version "b-c" are both
    # "aiart-<a>-b-c": the first keeps it, the second is told.
    first = models.name("ab")
    second = first.removesuffix("-ab")
    models.names.add(f"{first}-b")
    owner = models.declare(f"{first}-b", "c", iris_pickle)
    models.wait_status(owner, "Ready")
    models.names.add(second)
    # Config names of its own (the helper's "<model>-<version>" is the owner's).
    models.config(f"{second}-art-clash", iris_pickle)
    clash = f"{second}-clash"
    models.config(clash, manifest(second, "ab-b-c", f"{second}-art-clash"),
                  **{"aiart.model": second})
    labels = models.wait_status(clash, "Failed", timeout=240)
    message = labels["aiart.status.message"]
    assert f"is taken by model {first}-b version c" in message, message
    assert answered_by(gateway, f"/v2/models/{first}-b/infer") == f"{first}-b"
    assert models.labels(owner)["aiart.status"] == "Ready"


def _api_deploy(gateway: httpx.Client, key: str, text: str) -> httpx.Response:
    return gateway.post("/api/v1/models", headers={"X-API-Key": key},
                        files={"manifest": ("manifest.yaml", text.encode())})


def test_a_deployer_cannot_reach_another_models_artifacts_or_image(
        models: Models, iris_pickle: bytes, gateway: httpx.Client, run_id: str) -> None:
    """Through aiart's REST API on the gateway, with a deployer key for one
    model: every reference to a neighbour's artifacts, a platform config or
    a neighbour's image is refused, and nothing is declared."""
    mine, theirs = models.name("lane-mine"), models.name("lane-theirs")
    models.wait_status(models.declare(theirs, "1", iris_pickle), "Ready")
    their_artifact = f"{theirs}-model-1"
    models.engine.configs.get(their_artifact).remove()  # made by the test: label it as the API does
    models.config(their_artifact, iris_pickle, **{"aiart.artifact-of": theirs})
    image = models.labels(f"{theirs}-1")["aiart.status.image"]
    names = [f"t{run_id}-lane-deployer", f"t{run_id}-lane-admin"]
    deployer = aiart("keys", "create", names[0], "--role", "deployer", "--model", mine)
    admin = aiart("keys", "create", names[1], "--role", "admin", "--model", mine)
    try:
        # A platform config: the admin key's own record (made just above, so
        # that one is there whatever else runs; an earlier version took any
        # key's and failed when no other test held one at that moment).
        platform_config = next(c.name for c in models.engine.configs.list(
            filters={"label": f"aiart.apikey.name={names[1]}"}))
        def declaration(version: int, body: str) -> str:
            return (f"apiVersion: aiart/v1\nkind: Model\n"
                    f"metadata: {{name: {mine}, version: '{version}'}}\n"
                    f"spec:\n  auth: {{mode: none}}\n{body}")

        sklearn = "  runtime: sklearn\n  artifact: {{uri: '{}'}}\n".format
        attacks = {
            "s3": sklearn(f"s3://aiart-{theirs}/uploads/1/model.pkl"),
            "run": sklearn(f"run://{theirs}/20260101T120000Z-0a1b2c3d"),
            "config": sklearn(f"config://{their_artifact}"),
            "platform": sklearn(f"config://{platform_config}"),
            "image": f"  runtime: image\n  image: {image}\n",
        }
        for n, (what, body) in enumerate(attacks.items(), start=1):
            answer = _api_deploy(gateway, deployer, declaration(n, body))
            assert answer.status_code == 403, (what, answer.status_code, answer.text)
            assert answer.json()["problems"], what
        assert not models.engine.configs.list(filters={"label": f"aiart.model={mine}"})
        # An admin keeps full reach.
        answer = _api_deploy(gateway, admin, declaration(9, attacks["config"]))
        assert answer.status_code == 202, answer.text
        models.wait_status(f"{mine}-9", "Ready")
    finally:
        for name in names:
            aiart("keys", "revoke", name)
