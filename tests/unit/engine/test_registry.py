"""The registry's client (operator/aiart/engine/registry.py) copying an
image byte for byte: its manifest and blobs read, checked against their
digests, and pushed to another registry, where the image has the same
digest; a layer another repository of the registry holds linked rather than
sent, and found for an import in the images the swarm runs. Over an
in-memory registry that answers as the distribution project's does (the
upload protocol's POST, then PUT with the digest; a blob is in a repository
only once pushed or mounted there)."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import httpx
import pytest
from aiart.core import labels as L
from aiart.core.errors import ObjectMissing, PermanentError, TransientError
from aiart.core.packages import Blob
from aiart.engine.registry import Pushed, RegistryReader, digest
from aiart.transfer.packages import blob_sources

from tests.fakes import FakeCluster

MEDIA = "application/vnd.docker.distribution.manifest.v2+json"


class Memory:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.links: set[tuple[str, str]] = set()  # (repository, digest)
        self.manifests: dict[str, tuple[bytes, str]] = {}  # tag or digest -> (bytes, type)
        self.uploads: dict[str, str] = {}  # upload id -> repository
        self.sent: list[str] = []  # digests whose bytes came in an upload
        self.corrupt = False

    def put(self, repository: str, data: bytes) -> str:
        self.blobs[digest(data)] = data
        self.links.add((repository, digest(data)))
        return digest(data)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path.endswith("/blobs/uploads/"):
            repository = path.removeprefix("/v2/").removesuffix("/blobs/uploads/")
            mount, source = request.url.params.get("mount"), request.url.params.get("from")
            if mount and (source, mount) in self.links:
                self.links.add((repository, mount))
                return httpx.Response(201, headers={"Docker-Content-Digest": mount})
            upload = uuid.uuid4().hex
            self.uploads[upload] = repository
            # As the registry does: the upload's state in the location's query.
            return httpx.Response(202, headers={
                "Location": f"/v2/uploads/{upload}?_state=s-{upload}"})
        if request.method == "PUT" and path.startswith("/v2/uploads/"):
            upload = path.rpartition("/")[2]
            if request.url.params.get("_state") != f"s-{upload}":
                return httpx.Response(404, json={"errors": [{"code": "BLOB_UPLOAD_INVALID"}]})
            wanted = request.url.params["digest"]
            if digest(request.content) != wanted:
                return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID"}]})
            self.sent.append(wanted)
            self.put(self.uploads[upload], request.content)
            return httpx.Response(201)
        kind, _, ref = path.rpartition("/")
        if kind.endswith("/blobs"):
            repository = kind.removeprefix("/v2/").removesuffix("/blobs")
            if (repository, ref) not in self.links:
                return httpx.Response(404)
            data = self.blobs[ref]
            return httpx.Response(200, content=(b"x" + data[1:]) if self.corrupt else data)
        if request.method == "PUT":
            found = digest(request.content)
            entry = (request.content, request.headers["content-type"])
            self.manifests[ref] = self.manifests[found] = entry
            return httpx.Response(201, headers={"Docker-Content-Digest": found})
        if ref not in self.manifests:
            return httpx.Response(404)
        data, media = self.manifests[ref]
        return httpx.Response(200, content=data, headers={
            "Content-Type": media, "Docker-Content-Digest": digest(data)})


def client(memory: Memory) -> RegistryReader:
    return RegistryReader("https://registry:5000", "pw", transport=httpx.MockTransport(
        memory.handle))


async def test_an_image_copied_between_registries_keeps_its_digest() -> None:
    source, target = Memory(), Memory()
    config, layer = b'{"os": "linux"}', b"layer" * 1000
    for blob in (config, layer):
        source.put("aiart/iris", blob)
    # Spaced as a registry keeps it: the bytes, not a re-serialisation, are the image.
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MEDIA, "config": {
        "digest": digest(config), "size": len(config)}, "layers": [
        {"digest": digest(layer), "size": len(layer)}]}, indent=3).encode()
    source.manifests["1-abc"] = (manifest, MEDIA)
    reader, writer = client(source), client(target)
    data, media, found = await reader.manifest("aiart/iris", "1-abc")
    assert (data, media, found) == (manifest, MEDIA, "sha256:" + hashlib.sha256(
        manifest).hexdigest())
    for blob in (config, layer):
        # Streamed through a file, as an export and an import move a layer.
        spool = io.BytesIO()
        assert await reader.blob_into("aiart/iris", digest(blob), spool) == len(blob)
        copied = Blob.in_file(spool, 0, len(blob))
        assert await writer.push_blob("aiart/iris", copied, digest(blob)) is Pushed.SENT
        assert target.blobs[digest(blob)] == blob
    assert await writer.push_manifest("aiart/iris", "1-abc", data, media) == found
    assert (await writer.manifest("aiart/iris", found))[2] == found
    # A blob the target has is not sent again.
    before = dict(target.uploads)
    assert await writer.push_blob("aiart/iris", Blob.of(layer), digest(layer)) is Pushed.THERE
    assert target.uploads == before


async def test_what_does_not_match_its_digest_is_refused() -> None:
    source = Memory()
    layer = b"layer" * 10
    source.put("aiart/iris", layer)
    source.corrupt = True
    with pytest.raises(PermanentError, match="does not match its digest"):
        await client(source).blob("aiart/iris", digest(layer))
    with pytest.raises(PermanentError, match="does not match its digest"):
        await client(source).blob_into("aiart/iris", digest(layer), io.BytesIO())
    with pytest.raises(ObjectMissing):
        await client(source).manifest("aiart/iris", "nope")
    with pytest.raises(ObjectMissing):
        await client(source).blob("aiart/iris", digest(b"absent"))
    with pytest.raises(ObjectMissing):
        await client(source).blob_into("aiart/iris", digest(b"absent"), io.BytesIO())
    # What the registry receives is checked against the digest it is sent with.
    with pytest.raises(TransientError, match="answered 400"):
        await client(Memory()).push_blob("aiart/iris", Blob.of(layer), digest(b"other"))


async def test_a_layer_another_repository_holds_is_linked_not_sent() -> None:
    registry = Memory()
    runtime, own = b"runtime layer" * 100, b"the model file"
    registry.put("aiart/other", runtime)
    writer = client(registry)
    linked = await writer.push_blob("aiart/new", Blob.of(runtime), digest(runtime),
                                    mount_from="aiart/other")
    assert linked is Pushed.LINKED and ("aiart/new", digest(runtime)) in registry.links
    # A source that lacks it: the registry starts an upload instead, and the
    # bytes go up as without one.
    sent = await writer.push_blob("aiart/new", Blob.of(own), digest(own),
                                  mount_from="aiart/other")
    assert sent is Pushed.SENT and registry.sent == [digest(own)]
    assert await writer.push_blob("aiart/new", Blob.of(own), digest(own),
                                  mount_from="aiart/other") is Pushed.THERE


async def test_an_import_finds_the_layers_it_may_link_in_the_images_the_swarm_runs() -> None:
    registry = Memory()
    runtime, other_model, config = b"runtime" * 100, b"another model's file", b'{"os": "linux"}'
    layers = [registry.put("aiart/other", blob) for blob in (runtime, other_model)]
    manifest = json.dumps({"schemaVersion": 2, "mediaType": MEDIA, "config": {
        "digest": registry.put("aiart/other", config), "size": len(config)}, "layers": [
        {"digest": d, "size": 1} for d in layers]}).encode()
    registry.manifests[digest(manifest)] = (manifest, MEDIA)
    cluster = FakeCluster()
    for name, image in (
            ("aiart-other-1", f"registry:5000/aiart/other:1-abc@{digest(manifest)}"),
            # Another registry's image, and one not pinned: neither is read.
            ("aiart-byo-1", f"elsewhere:5000/team/x:1@{digest(manifest)}"),
            ("aiart-tag-1", "registry:5000/aiart/tag:1")):
        await cluster.create_service({"Name": name, "Labels": {L.MODEL: name},
                                      "TaskTemplate": {"ContainerSpec": {"Image": image}}})
    own = digest(b"the imported model's file")
    found = await blob_sources(cluster, client(registry), [layers[0], own])  # type: ignore[arg-type]
    assert found == {layers[0]: "aiart/other"}
