"""runtime: image: a ready image deployed as is, checked against the contract."""

from __future__ import annotations

import os

import httpx

from tests.e2e.conftest import Models


def byo(model: str, version: str, image: str, port: int = 8080) -> bytes:
    return (f"apiVersion: aiart/v1\nkind: Model\nmetadata: {{name: {model}, version: '{version}'}}\n"
            f"spec:\n  runtime: image\n  image: {image}\n  port: {port}\n"
            "  auth: {mode: none}\n").encode()


def test_a_conforming_image_is_served_and_a_foreign_one_fails(
    models: Models, iris_pickle: bytes, gateway: httpx.Client
) -> None:
    model = models.name("byo")
    built = models.declare(model, "1", iris_pickle)
    image = models.wait_status(built, "Ready", timeout=300)["aiart.status.image"]

    # Version 2 is the same server, handed over as a ready image.
    second = models.declare(model, "2", None, manifest_data=byo(model, "2", image))
    labels = models.wait_status(second, "Ready", timeout=120)
    assert labels["aiart.status.image"] == image
    answer = gateway.post(f"/models/{model}/versions/2/predict",
                          json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
    assert answer.json() == {"predictions": [0]}

    # An image that speaks another protocol (the registry's) is reported.
    registry = os.environ.get("AIART_REGISTRY_IMAGE", "")
    assert registry, "AIART_REGISTRY_IMAGE is set by ./hack/test.sh"
    foreign = models.name("foreign")
    config = models.declare(foreign, "1", None, manifest_data=byo(foreign, "1", registry, 5000))
    labels = models.wait_status(config, "Failed", timeout=120)
    message = labels["aiart.status.message"]
    assert "does not honour the inference contract" in message, message
    assert "GET /v2/health/live answered 404" in message, message


