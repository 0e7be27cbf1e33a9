"""The registry's password goes to aiart's registry only: with the pushes
of model images and the services that pull them, never with an image of
another registry (a ready image from a public one would carry it there)."""

from __future__ import annotations

import base64
import json

from aiart.engine.adapter import DockerCluster, RegistryAuth


def decoded(header: str) -> dict[str, str]:
    return json.loads(base64.urlsafe_b64decode(header))  # type: ignore[no-any-return]


def test_the_password_goes_with_aiarts_own_images_only() -> None:
    auth = RegistryAuth("registry.site:5000", "aiart", "s3cret")
    header = auth.for_image("registry.site:5000/aiart/iris@sha256:" + "1" * 64)
    assert decoded(header["X-Registry-Auth"]) == {
        "username": "aiart", "password": "s3cret", "serveraddress": "registry.site:5000"}
    for elsewhere in ("docker.io/library/python:3.11", "python:3.11",
                      "registry.site:5001/aiart/iris:1", "registry.site:5000.evil.example/x:1",
                      "evil.example/registry.site:5000/x:1"):
        assert auth.for_image(elsewhere) == {}, elsewhere


def test_services_are_created_with_it_only_for_aiarts_images() -> None:
    cluster = DockerCluster(None, RegistryAuth("localhost:5000", "aiart", "pw"))  # type: ignore[arg-type]

    def spec(image: str) -> dict[str, object]:
        return {"TaskTemplate": {"ContainerSpec": {"Image": image}}}

    assert "X-Registry-Auth" in cluster._auth_for(spec("localhost:5000/aiart/iris:1-abc"))
    assert cluster._auth_for(spec("ghcr.io/acme/model:2")) == {}
    assert DockerCluster(None)._auth_for(spec("localhost:5000/aiart/iris:1")) == {}  # type: ignore[arg-type]


def test_a_build_may_pull_aiarts_images_and_no_others_with_it() -> None:
    # Keyed by aiart's registry: the engine offers it to that one only.
    header = RegistryAuth("localhost:5000", "aiart", "pw").for_build()["X-Registry-Config"]
    assert decoded(header) == {  # type: ignore[comparison-overlap]
        "localhost:5000": {"username": "aiart", "password": "pw"}}
