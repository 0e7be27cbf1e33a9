"""A deployer stays in their lane: names chosen to collide with a
neighbour's routes or service neither take them over nor knock them out.
Against the real engine, Traefik and operator."""

from __future__ import annotations

import httpx

from tests.e2e.conftest import Models, manifest, wait_for

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
