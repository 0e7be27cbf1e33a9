"""Model packages through the REST API, between two sites made of in-memory
doubles: each its own engine (read as the API's engine proxy lets it: a
config named alone comes back without its data) and its own registry (as
the distribution project answers). A deployer exports a version signed with
the site's key; the other site's deployer of that model imports it, once;
a deployer of another model, a changed package, an unsigned one (unless an
admin says so) are refused. (tests/chaos/test_packages.py moves one between
two real swarms with the CLI.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from aiart.auth.access import Role
from aiart.core import labels as L
from aiart.core import packages as P
from aiart.core.objects import ConfigObject, ServiceObject
from aiart.core.store_layout import RunRef, bucket_for, run_prefix
from aiart.engine.registry import RegistryReader
from aiart.store.runs import fetch_run_model, store_run
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from tests.fakes import FakeCluster, tiny_model
from tests.unit.api.test_api import MANIFEST, World, deploy
from tests.unit.core.test_packages import image
from tests.unit.engine.test_registry import Memory

SITE_KEY = Ed25519PrivateKey.generate()
BUILT_AS = "localhost:5000/aiart/iris:1-0123456789abcdef"


class ProxiedCluster(FakeCluster):
    """The engine as the API's proxy shows it."""

    async def get_config(self, name: str) -> ConfigObject | None:
        found = await super().get_config(name)
        return None if found is None else replace(found, data=b"")


class Site:
    def __init__(self, key: Ed25519PrivateKey | None) -> None:
        self.cluster = ProxiedCluster()
        self.registry = Memory()
        self.world = World(cluster=self.cluster, package_key=key, registry=RegistryReader(
            "https://registry:5000", "pw", transport=httpx.MockTransport(self.registry.handle)))

    def trust(self, key: Ed25519PrivateKey, name: str = "site-a") -> None:
        public = key.public_key()
        self.cluster.add_config(
            f"{L.PACKAGE_KEY_CONFIG_PREFIX}{P.key_id(public)}",
            public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo),
            {L.PACKAGE_KEY: P.key_id(public), L.PACKAGE_KEY_NAME: name})


@pytest.fixture
def sites() -> Iterator[tuple[Site, Site]]:
    here, there = Site(SITE_KEY), Site(None)
    with here.world.client, there.world.client:
        yield here, there


def served(site: Site, manifest: bytes = MANIFEST) -> str:
    """iris 1 deployed through the API and served as the operator leaves it:
    its image in the registry, its service running it by digest."""
    headers = site.world.key(Role.DEPLOYER, "iris")
    artifact = None if b"artifact:" in manifest else tiny_model()
    answer = deploy(site.world, headers, manifest, artifact=artifact)
    assert answer.status_code == 202, answer.text
    built = image()
    for blob in built.blobs.values():
        site.registry.put("aiart/iris", blob.read())
    digest = P.digest(built.manifest)
    site.registry.manifests[digest] = site.registry.manifests["1-0123456789abcdef"] = (
        built.manifest, built.media_type)
    running = f"localhost:5000/aiart/iris@{digest}"
    site.cluster.services["svc-iris"] = ServiceObject(
        id="svc-iris", name="aiart-iris-1", index=1,
        labels={L.MODEL: "iris", L.VERSION: "1", L.IMAGE_TAG: BUILT_AS},
        spec={"TaskTemplate": {"ContainerSpec": {"Image": running}}})
    return running


def test_a_version_goes_from_one_site_to_another_through_the_api(
        sites: tuple[Site, Site]) -> None:
    here, there = sites
    running = served(here)
    viewer = here.world.key(Role.VIEWER, "iris")
    assert here.world.client.get("/api/v1/models/iris/package",
                                 headers=viewer).status_code == 403
    exported = here.world.client.get("/api/v1/models/iris/package?version=1",
                                     headers=here.world.key(Role.DEPLOYER, "iris"))
    assert exported.status_code == 200, exported.text
    assert exported.headers["x-aiart-package-signer"] == P.key_id(SITE_KEY.public_key())
    assert "iris-1.aiart" in exported.headers["content-disposition"]
    package = exported.content
    opened = P.open_package(P.from_tar(package), [SITE_KEY.public_key()])
    assert opened.contents.artifact == tiny_model()
    assert opened.contents.image is not None
    assert running.endswith(P.digest(opened.contents.image.manifest))

    # The other site: its own engine and registry; the key not trusted yet.
    deployer = there.world.key(Role.DEPLOYER, "iris")

    def post(body: bytes, headers: dict[str, str], query: str = "") -> httpx.Response:
        return there.world.client.post(f"/api/v1/packages{query}", content=body,
                                       headers={**headers,
                                                "Content-Type": "application/x-tar"})
    refused = post(package, deployer)
    assert refused.status_code == 400 and "does not trust" in refused.json()["error"]
    there.trust(SITE_KEY)
    assert post(package, there.world.key(Role.DEPLOYER, "wine")).status_code == 403
    at = package.index(tiny_model()[:32])
    changed = package[:at] + bytes([package[at] ^ 1]) + package[at + 1:]
    answer = post(changed, deployer)
    assert answer.status_code == 400 and "does not match its digest" in answer.json()["error"]
    assert not there.cluster.configs.keys() - {c.id for c in there.cluster.configs.values()
                                               if L.PACKAGE_KEY in c.labels}
    assert not there.registry.manifests

    done = post(package, deployer)
    assert done.status_code == 201, done.text
    assert done.json()["signer"] == P.key_id(SITE_KEY.public_key())
    version = there.cluster.config("iris-1")
    assert version.data == opened.contents.manifest
    origin = json.loads(version.labels[L.PACKAGE])
    assert origin["keyName"] == "site-a" and origin["image"] == running
    assert version.labels[L.CREATED_BY].startswith("apikey:")
    (artifact,) = [c for c in there.cluster.configs.values() if L.ARTIFACT_OF in c.labels]
    assert artifact.data == tiny_model()
    # The image byte for byte, under the tag it was built as.
    assert there.registry.manifests["1-0123456789abcdef"][0] == opened.contents.image.manifest
    assert set(there.registry.blobs) == set(opened.contents.image.blobs)
    # A registry that held none of it: every byte sent, none linked.
    assert done.json()["imageBytes"] == {"sent": sum(
        b.size for b in opened.contents.image.blobs.values()), "linked": 0, "there": 0}
    (shown,) = there.world.client.get("/api/v1/models/iris",
                                      headers=deployer).json()["versions"]
    assert shown["package"]["signer"] == P.key_id(SITE_KEY.public_key())

    again = post(package, deployer)
    assert again.status_code == 200 and "nothing to do" in again.json()["message"]


def test_an_unsigned_package_is_taken_only_when_an_admin_says_so(
        sites: tuple[Site, Site]) -> None:
    here, there = sites
    served(here)
    signed = here.world.client.get("/api/v1/models/iris/package?version=1",
                                   headers=here.world.key(Role.DEPLOYER, "iris")).content
    contents = P.open_package(P.from_tar(signed), [SITE_KEY.public_key()]).contents
    unsigned = P.to_tar(P.build(contents, None))

    def post(headers: dict[str, str], query: str) -> httpx.Response:
        return there.world.client.post(f"/api/v1/packages{query}", content=unsigned,
                                       headers=headers)
    deployer = there.world.key(Role.DEPLOYER, "iris")
    answer = post(deployer, "")
    assert answer.status_code == 400 and "not signed" in answer.json()["error"]
    assert post(deployer, "?allowUnsigned=true").status_code == 403
    done = post(there.world.key(Role.ADMIN), "?allowUnsigned=true")
    assert done.status_code == 201, done.text
    assert json.loads(there.cluster.config("iris-1").labels[L.PACKAGE])["signer"] == ""


async def test_a_version_from_a_training_run_takes_its_run_along(
        sites: tuple[Site, Site]) -> None:
    """A version whose model file is a run's (``run://``): the package holds
    the run's metrics and parameters, and the import puts the run back in
    the model's bucket on the other site under the same id, so that the
    manifest, unchanged, finds its model file there."""
    here, there = sites
    run = await store_run(here.world.store, "iris", "model.pkl", tiny_model(),
                          metrics={"accuracy": 0.97}, params={"C": 1.0, "data": "sha256:ab"})
    manifest = MANIFEST + f"  artifact: {{uri: run://iris/{run.run_id}}}\n".encode()
    served(here, manifest=manifest)
    exported = here.world.client.get("/api/v1/models/iris/package?version=1",
                                     headers=here.world.key(Role.DEPLOYER, "iris"))
    assert exported.status_code == 200, exported.text
    contents = P.open_package(P.from_tar(exported.content), [SITE_KEY.public_key()]).contents
    assert contents.run == {"runId": run.run_id, "metrics": {"accuracy": 0.97},
                            "params": {"C": 1.0, "data": "sha256:ab"}}
    assert contents.provenance["sourceRun"] == f"run://iris/{run.run_id}"

    there.trust(SITE_KEY)
    done = there.world.client.post("/api/v1/packages", content=exported.content, headers={
        **there.world.key(Role.DEPLOYER, "iris"), "Content-Type": "application/x-tar"})
    assert done.status_code == 201, done.text
    assert there.cluster.config("iris-1").data == contents.manifest
    data, record = await fetch_run_model(there.world.store, RunRef("iris", run.run_id))
    assert data == tiny_model() and record.model_file == "model.pkl"
    for part, kept in (("metrics", {"accuracy": 0.97}),
                       ("params", {"C": 1.0, "data": "sha256:ab"})):
        stored = await there.world.store.get(bucket_for("iris"),
                                             f"{run_prefix(run.run_id)}{part}.json")
        assert json.loads(stored) == kept
    assert json.loads(there.cluster.config("iris-1").labels[L.PACKAGE])["sourceRun"] == (
        f"run://iris/{run.run_id}")
