"""Model versions moved between swarms as packages (docs/packages.md): what
``aiart export`` and ``aiart import`` do on a manager, and the API's package
calls do for its callers, over the engine (configs, services), aiart's
registry and the object store. The format and its checks are
``core/packages.py``'s.

A package is made from what the swarm holds of a version: its manifest (the
config the operator served it from), its artifact (a config, the object
store, a training run), the run's metrics and parameters, and the image its
service runs, read from aiart's registry by digest, byte for byte. Imported,
the image goes into this swarm's registry under the tag it was built as, the
model file where the manifest says, and the version is declared: the
operator finds the image in the registry and builds nothing."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from aiart.catalog.records import now
from aiart.core import labels as L
from aiart.core import packages as P
from aiart.core.errors import ObjectMissing, PermanentError, TransientError
from aiart.core.images import digest_of, manifest_blobs, model_repository, repository_of
from aiart.core.objects import ConfigObject, ServiceObject
from aiart.core.render import service_name
from aiart.core.spec import Manifest, ManifestError, parse_manifest
from aiart.core.store_layout import ConfigRef, RunRef, S3Ref, bucket_for, run_prefix
from aiart.engine.policy import DEPLOYMENT_LABELS
from aiart.engine.registry import Pushed, RegistryReader
from aiart.store.artifacts import Fetched, fetch_artifact
from aiart.store.client import Store
from aiart.store.runs import read_run, store_run


class Engine(Protocol):
    """What moving a package needs of the engine: configs and services."""

    async def list_model_configs(self, model: str | None = None) -> list[ConfigObject]: ...
    async def list_configs(self, label: str) -> list[ConfigObject]: ...
    async def get_config(self, name: str) -> ConfigObject | None: ...
    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> None: ...
    async def list_services(self, model: str | None = None) -> list[ServiceObject]: ...


# Blobs pushed at once on an import.
PARALLEL_PUSHES = 4
# Images read to find layers this registry holds already: a swarm's models
# mostly share a few runtimes, so a handful of images covers them.
MAX_SOURCE_IMAGES = 32
# The object store, asked for only when a version needs it (a model file in
# a bucket or a run); raises PermanentError where none is configured.
StoreFor = Callable[[], Store]


async def trusted_keys(engine: Engine) -> list[tuple[ConfigObject, Ed25519PublicKey]]:
    """The keys this swarm trusts, as ``aiart trust add`` keeps them: a config
    named for the key's id, labelled with it, holding the key, and nothing
    else (no model version that also carries the label)."""
    found = []
    for config in await engine.list_configs(L.PACKAGE_KEY):
        try:
            key = P.load_public_key(config.data)
        except P.PackageError:
            continue
        key_id = P.key_id(key)
        if (config.name, config.labels.get(L.PACKAGE_KEY)) == (
                f"{L.PACKAGE_KEY_CONFIG_PREFIX}{key_id}", key_id) and not any(
                label in config.labels for label in DEPLOYMENT_LABELS):
            found.append((config, key))
    return found


def declared_version(config: ConfigObject) -> str:
    try:
        return parse_manifest(config.data).metadata.version
    except ManifestError:
        return config.labels.get(L.VERSION, "")


def pick_version(configs: list[ConfigObject], name: str, version: str) -> ConfigObject:
    """The config that declares ``version`` of the model (the one serving
    when ``version`` is empty)."""
    if not configs:
        raise PermanentError(f"no model {name!r} is declared")
    if version:
        chosen = [c for c in configs if declared_version(c) == version]
    else:
        chosen = [c for c in configs if c.labels.get(L.STATUS_CURRENT) == "true"]
    if not chosen:
        versions = ", ".join(sorted(map(declared_version, configs)))
        raise PermanentError(f"model {name} has no version {version!r} (it has {versions})"
                             if version else f"no version of {name} serves; say which "
                             f"({versions})")
    return chosen[0]


@dataclass(frozen=True, slots=True, kw_only=True)
class Exported:
    size: int  # the package's bytes written
    name: str
    version: str
    image: str  # as its service runs it: repository@sha256:...
    signer: str  # the signing key's id; "" unsigned


async def export_version(engine: Engine, registry: RegistryReader, store_for: StoreFor,
                         name: str, version: str, key: Ed25519PrivateKey | None,
                         out: IO[bytes]) -> Exported:
    """One version of a model as a package written to ``out``, signed with
    ``key`` (None: unsigned). The image's layers go through a temporary
    file, a chunk at a time: memory holds the small parts only."""
    config = pick_version(await engine.list_model_configs(name), name, version)
    try:
        manifest = parse_manifest(config.data)
    except ManifestError as exc:
        raise PermanentError(f"{config.name} is not a valid manifest: {exc}") from None
    version = manifest.metadata.version
    services = [s for s in await engine.list_services(name)
                if s.name == service_name(name, version)]
    image = str(((services[0].spec.get("TaskTemplate") or {}).get("ContainerSpec") or {})
                .get("Image", "")) if services else ""
    # The tag it was built as (the service runs it by digest).
    tag = services[0].labels.get(L.IMAGE_TAG, "") if services else ""
    if "@sha256:" not in image:
        raise PermanentError(f"{name}:{version} runs no image aiart built and pinned yet "
                             f"(status {config.labels.get(L.STATUS, 'Pending')})")
    artifact = manifest.spec.artifact
    store = store_for() if artifact is not None and not isinstance(
        artifact.ref, ConfigRef) else None
    fetched = await fetch_artifact(engine, store, artifact) if artifact else None
    run: dict[str, Any] | None = None
    artifact_name = artifact.uri.rsplit("/", 1)[-1] if artifact else ""
    if fetched is not None and fetched.run_id and store is not None and artifact is not None:
        assert isinstance(artifact.ref, RunRef)
        artifact_name = (await read_run(store, artifact.ref)).model_file
        found_run: dict[str, Any] = {"runId": fetched.run_id}
        for part in ("metrics", "params"):
            try:
                found_run[part] = json.loads(await store.get(
                    bucket_for(name), f"{run_prefix(fetched.run_id)}{part}.json"))
            except ObjectMissing:
                found_run[part] = None
        run = found_run
    digest = image.partition("@")[2]
    repository = model_repository(name)
    manifest_bytes, media_type, _ = await registry.manifest(repository, digest)
    descriptors = json.loads(manifest_bytes)
    parts = [descriptors["config"], *descriptors.get("layers", [])]
    with tempfile.TemporaryFile() as layers:
        blobs: dict[str, P.Blob] = {}
        for part in parts:
            offset = layers.tell()
            size = await registry.blob_into(repository, part["digest"], layers)
            blobs[part["digest"]] = P.Blob.in_file(layers, offset, size)
        labels = json.loads(blobs[parts[0]["digest"]].read()).get("config", {}).get(
            "Labels") or {}
        contents = _contents(name, version, config, manifest, image, tag, fetched,
                             artifact_name, run, labels,
                             P.Image(manifest=manifest_bytes, media_type=media_type,
                                     blobs=blobs))
        start = out.tell()
        P.write_tar(P.build(contents, key), out)
        size = out.tell() - start
    return Exported(size=size, name=name, version=version, image=image,
                    signer=P.key_id(key.public_key()) if key else "")


def _contents(name: str, version: str, config: ConfigObject, manifest: Manifest, image: str,
              tag: str, fetched: Fetched | None, artifact_name: str,
              run: dict[str, Any] | None, labels: Mapping[str, str],
              built: P.Image) -> P.Contents:
    artifact = manifest.spec.artifact
    return P.Contents(
        name=name, version=version, manifest=config.data,
        artifact_name=artifact_name,
        artifact=fetched.data if fetched else None, run=run,
        provenance={"image": image, "imageTag": tag, "artifact": artifact.uri if artifact else "",
                    "artifactSha256": fetched.sha256 if fetched else "",
                    "sourceRun": f"run://{name}/{fetched.run_id}"
                    if fetched and fetched.run_id else "",
                    "runtime": manifest.spec.runtime.value,
                    "imageLabels": {k: v for k, v in labels.items()
                                    if k.startswith("aiart.")}},
        image=built, created=config.created_at, format=manifest.spec.runtime.value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Imported:
    name: str
    version: str
    signer: str  # the key id that signed it; "" unsigned (allowed)
    declared: bool  # False: the version was declared so already, nothing done
    image: str  # repository:tag it was put in this swarm's registry as; "" none
    origin: Mapping[str, str]  # what the version's aiart.package label says
    # The image's bytes by how they came into the model's repository: sent,
    # linked from another model's (a runtime's layers), or there already.
    moved: Mapping[str, int] = field(default_factory=dict)


async def import_package(
    engine: Engine, registry: RegistryReader, store_for: StoreFor, package: IO[bytes], *,
    allow_unsigned: bool, created_by: str = "",
    authorize: Callable[[str], None] = lambda _: None,
) -> Imported:
    """Check the package (a seekable file, read where it is), put its image
    into this swarm's registry byte for
    byte (its digest unchanged) and its model file where its manifest says,
    and declare the version. ``authorize`` is given the model's name once the
    package is checked, before anything is written (the API's caller must be
    one of its deployers). ``created_by``: who declared it (by default
    ``package:<the signer's key id>``)."""
    keys = await trusted_keys(engine)
    opened = P.open_package(P.read_tar(package), [key for _, key in keys],
                            allow_unsigned=allow_unsigned)
    contents = opened.contents
    try:
        manifest = parse_manifest(contents.manifest)
    except ManifestError as exc:
        raise PermanentError(f"the package's manifest is not valid here: {exc}") from None
    name, version = manifest.metadata.name, manifest.metadata.version
    if (name, version) != (contents.name, contents.version):
        raise PermanentError(f"the package is {contents.name}:{contents.version} but its "
                             f"manifest declares {name}:{version}")
    authorize(name)
    key_name = next((c.labels.get(L.PACKAGE_KEY_NAME, "") for c, key in keys
                     if P.key_id(key) == opened.signer), "")
    origin = P.origin(opened, key_name=key_name, imported_at=now())
    existing = [c for c in await engine.list_model_configs(name)
                if declared_version(c) == version]
    if existing:
        if existing[0].data == contents.manifest:
            return Imported(name=name, version=version, signer=opened.signer, declared=False,
                            image="", origin=origin)
        raise PermanentError(f"{name}:{version} is declared here with another manifest; "
                             "remove it first or import another version")
    pushed, moved = "", {}
    if contents.image is not None:
        # The tag it was built as; the version runs it by digest, whatever
        # this site's aiart would build (control/prepare.py).
        tag = P.image_tag(contents)
        if not tag:
            raise PermanentError("the package names no tag for its image")
        # Layers this registry holds already for another model (a runtime's,
        # most of an image) are linked, not sent again.
        sources = await blob_sources(engine, registry, contents.image.blobs)
        # A few at a time: most of an upload is waiting on the registry.
        limit = asyncio.Semaphore(PARALLEL_PUSHES)

        moved = dict.fromkeys((p.value for p in Pushed), 0)

        async def push(wanted: str, blob: P.Blob) -> None:
            async with limit:
                how = await registry.push_blob(model_repository(name), blob, wanted,
                                               mount_from=sources.get(wanted))
            moved[how.value] += blob.size
        await asyncio.gather(*(push(d, b) for d, b in contents.image.blobs.items()))
        await registry.push_manifest(model_repository(name), tag, contents.image.manifest,
                                     contents.image.media_type)
        pushed = f"{model_repository(name)}:{tag}"
    artifact = manifest.spec.artifact
    if artifact is not None:
        await _restore_artifact(engine, store_for, artifact.ref, name, version, contents)
    await engine.create_config(f"{name}-{version}", contents.manifest, {
        L.MODEL: name, L.CREATED_BY: created_by or f"package:{opened.signer or 'unsigned'}",
        L.PACKAGE: json.dumps(origin, sort_keys=True)})
    return Imported(name=name, version=version, signer=opened.signer, declared=True,
                    image=pushed, origin=origin, moved=moved)


async def blob_sources(engine: Engine, registry: RegistryReader,
                       wanted: Iterable[str]) -> dict[str, str]:
    """Which repository of this registry holds each ``wanted`` blob, as far
    as the images this swarm's models run tell (their manifests: a request
    each, a few at a time, MAX_SOURCE_IMAGES at most). Only blobs whose bytes
    the package carries, checked, are ever asked for, so linking one gives
    the importer nothing it did not have."""
    missing = set(wanted)
    images: dict[tuple[str, str], None] = {}
    for service in await engine.list_services():
        image = str(service.spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image"))
        repository, pinned = repository_of(image, registry.host), digest_of(image)
        if repository and pinned:
            images[(repository, pinned)] = None
    found: dict[str, str] = {}
    limit = asyncio.Semaphore(PARALLEL_PUSHES)

    async def read(repository: str, pinned: str) -> None:
        async with limit:
            if not missing - found.keys():
                return
            try:
                data, _, _ = await registry.manifest(repository, pinned)
            except (ObjectMissing, TransientError, PermanentError):
                return  # removed meanwhile, or unreadable: the bytes are sent instead
        for blob in manifest_blobs(json.loads(data)):
            if blob in missing:
                found.setdefault(blob, repository)
    await asyncio.gather(*(read(r, d) for r, d in list(images)[:MAX_SOURCE_IMAGES]))
    return found


async def _restore_artifact(engine: Engine, store_for: StoreFor, ref: Any, name: str,
                            version: str, contents: P.Contents) -> None:
    data = contents.artifact
    if data is None:
        raise PermanentError("the package's manifest names a model file the package lacks")
    if isinstance(ref, ConfigRef):
        found = await engine.get_config(ref.name)
        if found is None:
            await engine.create_config(ref.name, data, {
                L.ARTIFACT_OF: name, L.VERSION: version, L.MANAGED_BY: L.MANAGED_BY_VALUE})
        elif found.data != data:
            raise PermanentError(f"a config {ref.name} exists here with other contents")
        return
    store = store_for()
    if isinstance(ref, S3Ref):
        await store.ensure_bucket(ref.bucket)
        await store.put(ref.bucket, ref.key, data)
        return
    run = dict(contents.run or {})
    await store_run(store, name, contents.artifact_name or "model", data,
                    metrics=run.get("metrics"), params=run.get("params"),
                    run_id=str(run.get("runId") or ref.run_id))
