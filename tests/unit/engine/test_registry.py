"""The registry's client (operator/aiart/engine/registry.py) copying an
image byte for byte: its manifest and blobs read, checked against their
digests, and pushed to another registry, where the image has the same
digest. Over an in-memory registry that answers as the distribution
project's does (the upload protocol's POST, then PUT with the digest)."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

import httpx
import pytest
from aiart.core.errors import ObjectMissing, PermanentError, TransientError
from aiart.core.packages import Blob
from aiart.engine.registry import RegistryReader, digest

MEDIA = "application/vnd.docker.distribution.manifest.v2+json"


class Memory:
    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self.manifests: dict[str, tuple[bytes, str]] = {}  # tag or digest -> (bytes, type)
        self.uploads: dict[str, str] = {}  # upload id -> repository
        self.corrupt = False

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path.endswith("/blobs/uploads/"):
            upload = uuid.uuid4().hex
            self.uploads[upload] = path
            # As the registry does: the upload's state in the location's query.
            return httpx.Response(202, headers={
                "Location": f"/v2/uploads/{upload}?_state=s-{upload}"})
        if request.method == "PUT" and path.startswith("/v2/uploads/"):
            if request.url.params.get("_state") != f"s-{path.rpartition('/')[2]}":
                return httpx.Response(404, json={"errors": [{"code": "BLOB_UPLOAD_INVALID"}]})
            wanted = request.url.params["digest"]
            if digest(request.content) != wanted:
                return httpx.Response(400, json={"errors": [{"code": "DIGEST_INVALID"}]})
            self.blobs[wanted] = request.content
            return httpx.Response(201)
        kind, _, ref = path.rpartition("/")
        if kind.endswith("/blobs"):
            if ref not in self.blobs:
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
        source.blobs[digest(blob)] = blob
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
        assert await writer.push_blob("aiart/iris", copied, digest(blob)) == digest(blob)
        assert target.blobs[digest(blob)] == blob
    assert await writer.push_manifest("aiart/iris", "1-abc", data, media) == found
    assert (await writer.manifest("aiart/iris", found))[2] == found
    # A blob the target has is not sent again.
    before = dict(target.uploads)
    await writer.push_blob("aiart/iris", Blob.of(layer), digest(layer))
    assert target.uploads == before


async def test_what_does_not_match_its_digest_is_refused() -> None:
    source = Memory()
    layer = b"layer" * 10
    source.blobs[digest(layer)] = layer
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
