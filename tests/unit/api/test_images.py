"""A model's images through the REST API, over a registry that answers as
the distribution project's does (Docker Registry HTTP API v2, in memory):
tags, digests, sizes and ages for the model's viewers; an unused image
removed by its deployers, one in use refused. (tests/e2e/test_api_cli.py
uses the real registry.)"""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from aiart.auth.access import Role
from aiart.core import labels as L
from aiart.core.objects import ServiceObject
from aiart.engine.registry import RegistryReader

from tests.unit.api.test_api import World

OLD, NEW, OTHER = ("sha256:" + c * 64 for c in "abc")
MEDIA = "application/vnd.docker.distribution.manifest.v2+json"


class Registry:
    """Repositories of tag -> (digest, created); what it was asked."""

    def __init__(self) -> None:
        self.repositories = {"aiart/iris": {"1-x": (OLD, "2026-12-01T00:00:00Z"),
                                            "2-y": (NEW, "2026-12-05T00:00:00Z")},
                             "aiart/wine": {"1-z": (OTHER, "2026-12-02T00:00:00Z")}}
        self.seen: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.headers.get("authorization") != httpx.BasicAuth("aiart", "pw")._auth_header:
            return httpx.Response(401)
        parts = request.url.path.split("/")  # "", "v2", "aiart", name, kind, ref
        tags = self.repositories.get(f"{parts[2]}/{parts[3]}")
        if tags is None:
            return httpx.Response(404, json={"errors": [{"code": "NAME_UNKNOWN"}]})
        kind, ref = parts[4], parts[5] if len(parts) > 5 else ""
        if kind == "tags":
            return httpx.Response(200, json={"name": parts[3], "tags": list(tags)})
        if kind == "manifests" and request.method == "DELETE":
            gone = [t for t, (d, _) in tags.items() if d == ref]
            for tag in gone:
                del tags[tag]
            return httpx.Response(202 if gone else 404)
        if kind == "manifests" and ref in tags:
            digest, created = tags[ref]
            return httpx.Response(200, headers={"Docker-Content-Digest": digest}, json={
                "mediaType": MEDIA, "config": {"size": 10, "digest": f"sha256:{created}"},
                "layers": [{"size": 1000}, {"size": 234}]})
        if kind == "blobs":
            return httpx.Response(200, json={"created": ref.removeprefix("sha256:")})
        return httpx.Response(404)


@pytest.fixture
def registry() -> Registry:
    return Registry()


@pytest.fixture
def world(registry: Registry) -> Iterator[World]:
    reader = RegistryReader("https://registry:5000", "pw",
                            transport=httpx.MockTransport(registry.handle))
    w = World(registry=reader)
    with w.client:
        yield w


def runs(world: World, image: str) -> None:
    """A service of model iris running ``image``, as the operator makes it."""
    world.cluster.services["s1"] = ServiceObject(
        id="s1", name="aiart-iris-2", index=1, labels={L.MODEL: "iris"},
        spec={"TaskTemplate": {"ContainerSpec": {"Image": image}}})


def test_a_models_images_with_what_runs(world: World) -> None:
    runs(world, f"localhost:5000/aiart/iris:2-y@{NEW}")
    viewer = world.key(Role.VIEWER, "iris")
    listed = world.client.get("/api/v1/models/iris/images", headers=viewer)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["repository"] == "aiart/iris"
    assert [(i["digest"], i["tags"], i["size"], i["inUse"]) for i in body["images"]] == [
        (NEW, ["2-y"], 1244, True), (OLD, ["1-x"], 1244, False)]
    assert body["images"][0]["created"] == "2026-12-05T00:00:00Z"
    # Another model's images are not this key's to see.
    assert world.client.get("/api/v1/models/wine/images", headers=viewer).status_code == 403
    # A model nothing was pushed for yet has none.
    admin = world.key(Role.ADMIN)
    assert world.client.get("/api/v1/models/none/images", headers=admin).json()["images"] == []


def test_an_unused_image_is_removed_by_a_deployer_one_in_use_is_kept(
        world: World, registry: Registry) -> None:
    runs(world, f"localhost:5000/aiart/iris:2-y@{NEW}")
    deployer, viewer = world.key(Role.DEPLOYER, "iris"), world.key(Role.VIEWER, "iris")
    assert world.client.delete(f"/api/v1/models/iris/images/{OLD}",
                               headers=viewer).status_code == 403
    kept = world.client.delete(f"/api/v1/models/iris/images/{NEW}", headers=deployer)
    assert kept.status_code == 409 and "in use" in kept.json()["error"]
    # A declared version's last image counts as in use too (asleep, say).
    world.cluster.add_config("iris-1", b"", {L.MODEL: "iris",
                                             L.STATUS_IMAGE: f"h/aiart/iris:1-x@{OLD}"})
    assert world.client.delete(f"/api/v1/models/iris/images/{OLD}",
                               headers=deployer).status_code == 409
    world.cluster.remove_config("iris-1")
    removed = world.client.delete(f"/api/v1/models/iris/images/{OLD}", headers=deployer)
    assert removed.status_code == 200 and removed.json() == {"removed": OLD}
    assert set(registry.repositories["aiart/iris"]) == {"2-y"}
    assert world.client.delete(f"/api/v1/models/iris/images/{OLD}",
                               headers=deployer).status_code == 404
    # Only in the model's own repository, only a digest.
    assert world.client.delete(f"/api/v1/models/iris/images/{OTHER}",
                               headers=deployer).status_code == 404
    assert registry.repositories["aiart/wine"]
    for bad in ("latest", "sha256:../../x", "sha256:" + "A" * 64):
        answer = world.client.delete(f"/api/v1/models/iris/images/{bad}", headers=deployer)
        assert answer.status_code in (400, 404), (bad, answer.status_code)
    assert all(r.url.path.startswith("/v2/aiart/iris/") for r in registry.seen
               if r.method == "DELETE")


def test_a_registry_away_or_refusing_is_said(registry: Registry) -> None:
    def away(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("no route", request=request)
    for reader in (RegistryReader("https://registry:5000", "pw",
                                  transport=httpx.MockTransport(away)),
                   RegistryReader("https://registry:5000", "wrong",
                                  transport=httpx.MockTransport(registry.handle)), None):
        w = World(registry=reader)
        with w.client:
            answer = w.client.get("/api/v1/models/iris/images", headers=w.key(Role.ADMIN))
        assert answer.status_code in (400, 503), answer.text
        said = json.dumps(answer.json())
        assert "registry" in said, said


def test_the_models_page_lists_its_images_with_remove_for_unused_ones(
        registry: Registry) -> None:
    from aiart.ui.pages import ROUTES
    reader = RegistryReader("https://registry:5000", "pw",
                            transport=httpx.MockTransport(registry.handle))
    w = World(registry=reader, pages=ROUTES)
    with w.client:
        w.cluster.add_config("iris-2", b"", {L.MODEL: "iris", L.VERSION: "2",
                                             L.STATUS_IMAGE: f"h/aiart/iris:2-y@{NEW}"})
        deployer = w.client.get("/ui/models/iris", headers=w.key(Role.DEPLOYER, "iris")).text
        images = deployer.split('id="images"')[1].split("</table>")[0]
        assert "2-y" in images and "1-x" in images and "0.0 MiB" in images
        assert f'data-remove-image="{OLD}"' in images
        assert f'data-remove-image="{NEW}"' not in images  # in use
        viewer = w.client.get("/ui/models/iris", headers=w.key(Role.VIEWER, "iris")).text
        assert "2-y" in viewer and "data-remove-image" not in viewer
