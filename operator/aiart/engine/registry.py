"""aiart's registry through its HTTP API (Docker Registry v2, the
distribution project's), over HTTPS with aiart's internal CA and the
registry's password, as every push and pull: a model's images (tags,
digests, sizes, ages) and removing one that nothing runs (the API's images
list); an image's manifest and blobs read and written byte for byte (model
packages: an image keeps its digest from one site's registry to
another's). Which images are in use is core/images.py's."""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import logging
import ssl
from collections.abc import AsyncIterator
from typing import IO, Any

import httpx

from aiart.core.errors import ObjectMissing, PermanentError, TransientError
from aiart.core.images import ACCEPT, Tagged, manifest_size
from aiart.core.packages import CHUNK, Blob

log = logging.getLogger("aiart.api")
USER = "aiart"
# Tags read at once: each costs two small requests (a manifest, a config).
PARALLEL_READS = 8
MAX_TAGS = 500


def digest(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class Pushed(enum.Enum):
    """How a pushed blob came to be in its repository."""

    THERE = "there"  # it was already
    LINKED = "linked"  # from another repository of the same registry
    SENT = "sent"  # its bytes uploaded


class RegistryReader:
    """The registry's client (named for what the API first did with it)."""

    def __init__(self, url: str, password: str | None, ca_file: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        verify: ssl.SSLContext | bool = True
        if ca_file:
            verify = ssl.create_default_context(cafile=ca_file)
        self._client = httpx.AsyncClient(
            base_url=url, timeout=15, verify=verify, transport=transport,
            auth=(USER, password) if password else None)

    async def _get(self, path: str, **headers: str) -> httpx.Response:
        try:
            answer = await self._client.get(path, headers=headers)
        except httpx.HTTPError as exc:
            raise TransientError(f"the registry cannot be reached: {exc}") from None
        if answer.status_code == 401:
            raise PermanentError("the registry refused the API's password")
        return answer

    async def images(self, repository: str) -> list[Tagged]:
        """Every tag of ``repository`` with its digest, size and age; [] for
        a repository the registry does not hold (nothing pushed yet)."""
        answer = await self._get(f"/v2/{repository}/tags/list?n={MAX_TAGS}")
        if answer.status_code == 404:
            return []
        if answer.status_code != 200:
            raise TransientError(f"the registry answered {answer.status_code} for "
                                 f"{repository}'s tags")
        tags = sorted(answer.json().get("tags") or [])
        limit = asyncio.Semaphore(PARALLEL_READS)

        async def one(tag: str) -> Tagged | None:
            async with limit:
                return await self._tagged(repository, tag)
        found = await asyncio.gather(*(one(tag) for tag in tags))
        return [t for t in found if t is not None]

    async def _tagged(self, repository: str, tag: str) -> Tagged | None:
        answer = await self._get(f"/v2/{repository}/manifests/{tag}", Accept=ACCEPT)
        if answer.status_code == 404:
            return None  # removed since the list was read
        if answer.status_code != 200:
            raise TransientError(f"the registry answered {answer.status_code} for "
                                 f"{repository}:{tag}")
        manifest: dict[str, Any] = answer.json()
        digest = answer.headers.get("docker-content-digest", "")
        created = ""
        config = manifest.get("config") or {}
        if isinstance(config, dict) and config.get("digest"):
            blob = await self._get(f"/v2/{repository}/blobs/{config['digest']}")
            if blob.status_code == 200:
                created = str(blob.json().get("created") or "")
        return Tagged(tag=tag, digest=digest, size=manifest_size(manifest), created=created)

    async def delete(self, repository: str, digest: str) -> None:
        """Remove an image (every tag of it) from the registry; its layers'
        space comes back at the registry's next garbage collection."""
        try:
            answer = await self._client.delete(f"/v2/{repository}/manifests/{digest}")
        except httpx.HTTPError as exc:
            raise TransientError(f"the registry cannot be reached: {exc}") from None
        if answer.status_code == 404:
            raise ObjectMissing(f"{repository} has no image {digest}")
        if answer.status_code == 405:
            raise PermanentError("the registry does not allow removals "
                                 "(REGISTRY_STORAGE_DELETE_ENABLED)")
        if answer.status_code not in (200, 202):
            raise TransientError(f"the registry answered {answer.status_code} to removing "
                                 f"{repository}@{digest}")

    async def manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        """A manifest's bytes as the registry holds them, its media type and
        its digest (checked against the bytes)."""
        answer = await self._get(f"/v2/{repository}/manifests/{reference}", Accept=ACCEPT)
        if answer.status_code == 404:
            raise ObjectMissing(f"the registry has no {repository}:{reference}")
        if answer.status_code != 200:
            raise TransientError(f"the registry answered {answer.status_code} for "
                                 f"{repository}:{reference}")
        data = answer.content
        found = digest(data)
        said = answer.headers.get("docker-content-digest", found)
        if said != found or (reference.startswith("sha256:") and reference != found):
            raise PermanentError(f"the registry's manifest for {repository}:{reference} does "
                                 f"not match its digest")
        kind = answer.headers.get("content-type", "").split(";")[0] or \
            str(json.loads(data).get("mediaType", ""))
        return data, kind, found

    async def blob(self, repository: str, wanted: str) -> bytes:
        """A blob's bytes, checked against its digest."""
        answer = await self._get(f"/v2/{repository}/blobs/{wanted}")
        if answer.status_code == 404:
            raise ObjectMissing(f"the registry has no blob {wanted} in {repository}")
        if answer.status_code != 200:
            raise TransientError(f"the registry answered {answer.status_code} for the blob "
                                 f"{wanted}")
        if digest(answer.content) != wanted:
            raise PermanentError(f"the registry's blob {wanted} does not match its digest")
        return answer.content

    async def blob_into(self, repository: str, wanted: str, out: IO[bytes]) -> int:
        """A blob written to ``out`` as it arrives, checked against its
        digest; its size. (A layer of gigabytes never sits in memory.)"""
        hashed, size = hashlib.sha256(), 0
        try:
            async with self._client.stream("GET", f"/v2/{repository}/blobs/{wanted}") as answer:
                if answer.status_code == 404:
                    raise ObjectMissing(f"the registry has no blob {wanted} in {repository}")
                if answer.status_code != 200:
                    raise TransientError(f"the registry answered {answer.status_code} for the "
                                         f"blob {wanted}")
                async for part in answer.aiter_bytes(CHUNK):
                    hashed.update(part)
                    out.write(part)
                    size += len(part)
        except httpx.HTTPError as exc:
            raise TransientError(f"the registry cannot be reached: {exc}") from None
        if f"sha256:{hashed.hexdigest()}" != wanted:
            raise PermanentError(f"the registry's blob {wanted} does not match its digest")
        return size

    @property
    def host(self) -> str:
        """The registry as image references name it (``host:port``)."""
        return self._client.base_url.netloc.decode()

    async def push_blob(self, repository: str, blob: Blob, wanted: str, *,
                        mount_from: str | None = None) -> Pushed:
        """Put a blob whose digest is ``wanted`` into ``repository``: one
        upload, streamed from where it is, unless the repository has it
        already. The registry checks the digest of what it receives.
        ``mount_from``: another repository of this registry that holds the
        blob: it is linked from there, no byte sent (the registry answers
        with an upload instead when it cannot)."""
        try:
            if (await self._client.head(f"/v2/{repository}/blobs/{wanted}")).status_code == 200:
                return Pushed.THERE
            started = await self._client.post(
                f"/v2/{repository}/blobs/uploads/",
                params={"mount": wanted, "from": mount_from} if mount_from else None)
            if mount_from and started.status_code == 201:
                return Pushed.LINKED
            if started.status_code != 202 or "location" not in started.headers:
                raise TransientError(f"the registry answered {started.status_code} to an "
                                     f"upload into {repository}")
            # The upload's location carries its state in its query: the
            # digest is added to it (``params=`` would replace it, and the
            # registry then refuses the upload as invalid).
            where = httpx.URL(started.headers["location"]).copy_add_param("digest", wanted)

            async def body() -> AsyncIterator[bytes]:
                for part in blob.chunks():
                    yield part
            done = await self._client.put(where, content=body(), headers={
                "Content-Type": "application/octet-stream", "Content-Length": str(blob.size)})
        except httpx.HTTPError as exc:
            raise TransientError(f"the registry cannot be reached: {exc}") from None
        if done.status_code != 201:
            raise TransientError(f"the registry answered {done.status_code} to the blob "
                                 f"{wanted}")
        return Pushed.SENT

    async def push_manifest(self, repository: str, tag: str, data: bytes,
                            media_type: str) -> str:
        """Put a manifest under ``tag``, byte for byte; its digest."""
        try:
            answer = await self._client.put(f"/v2/{repository}/manifests/{tag}", content=data,
                                             headers={"Content-Type": media_type})
        except httpx.HTTPError as exc:
            raise TransientError(f"the registry cannot be reached: {exc}") from None
        if answer.status_code != 201:
            raise PermanentError(f"the registry refused the manifest of {repository}:{tag} "
                                 f"({answer.status_code}: {answer.text[:200]})")
        return digest(data)

    async def aclose(self) -> None:
        await self._client.aclose()
