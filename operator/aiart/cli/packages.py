"""``aiart export``, ``aiart packages key``, ``aiart trust``: model packages
(docs/packages.md), on a manager, as ``aiart keys`` and ``aiart runs``.

A package is made from what the swarm holds of a version: its manifest (the
config the operator served it from), its artifact (a config, the object
store, a training run), the run's metrics and parameters, and the image its
service runs, read from aiart's registry by digest, byte for byte."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import aiodocker
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from aiart.catalog.records import now
from aiart.cli.store import _store
from aiart.cli.table import table
from aiart.core import labels as L
from aiart.core import packages as P
from aiart.core.errors import ObjectMissing, PermanentError
from aiart.core.images import model_repository
from aiart.core.objects import ConfigObject
from aiart.core.render import service_name
from aiart.core.settings import CLISettings, OperatorSettings, environment_with
from aiart.core.spec import DNS_LABEL, ManifestError, parse_manifest
from aiart.core.store_layout import ConfigRef, RunRef, S3Ref, bucket_for, run_prefix
from aiart.engine.adapter import DockerCluster
from aiart.engine.policy import DEPLOYMENT_LABELS
from aiart.engine.registry import RegistryReader
from aiart.store.artifacts import fetch_artifact
from aiart.store.runs import read_run, store_run


def add_commands(commands: Any) -> None:
    export = commands.add_parser(
        "export", help="write a model version, its image and its run into one signed file")
    export.add_argument("model", metavar="NAME[:VERSION]",
                        help="the model; without a version, the one serving")
    export.add_argument("-o", "--output", type=Path, required=True, metavar="FILE",
                        help="the package to write, e.g. iris-1.aiart")
    export.add_argument("--key", help="the signing key's name (aiart packages key create); "
                                      "default: the only one there is")
    export.add_argument("--unsigned", action="store_true",
                        help="sign nothing (an importing site must allow unsigned imports)")

    imported = commands.add_parser(
        "import", help="check a package and declare its model here, with its image: served "
                       "without a build")
    imported.add_argument("package", type=Path, metavar="FILE")
    imported.add_argument("--allow-unsigned", action="store_true",
                          help="take a package no trusted key signed (an admin's choice)")

    packages = commands.add_parser("packages", help="keys that sign model packages")
    package_commands = packages.add_subparsers(dest="packages_command", required=True)
    key = package_commands.add_parser("key", help="signing keys on this machine")
    key_commands = key.add_subparsers(dest="key_command", required=True)
    create = key_commands.add_parser("create", help="make a signing key; prints its public "
                                                    "key's file, for importing sites to trust")
    create.add_argument("name")
    key_commands.add_parser("ls", help="the signing keys on this machine")

    trust = commands.add_parser("trust", help="the keys whose packages this swarm imports")
    trust_commands = trust.add_subparsers(dest="trust_command", required=True)
    add = trust_commands.add_parser("add", help="trust a public key (a .pub file)")
    add.add_argument("name")
    add.add_argument("public_key", type=Path, metavar="FILE")
    trust_commands.add_parser("ls", help="the keys this swarm trusts")
    remove = trust_commands.add_parser("rm", help="trust a key no more (by name or id)")
    remove.add_argument("name")


def _keys_dir() -> Path:
    return CLISettings.from_env().config_dir / "signing"


def _signing_key(name: str | None) -> tuple[Ed25519PrivateKey, str]:
    found = sorted(_keys_dir().glob("*.pem")) if _keys_dir().is_dir() else []
    if name:
        found = [f for f in found if f.stem == name]
    if len(found) != 1:
        what = f"no signing key {name!r}" if name else (
            "no signing key" if not found else "more than one signing key: say which (--key)")
        raise PermanentError(f"{what} in {_keys_dir()}; make one with aiart packages key create "
                             "NAME, or export --unsigned")
    return P.load_private_key(found[0].read_bytes()), found[0].stem


def create_key(name: str) -> int:
    if not DNS_LABEL.match(name):
        raise PermanentError(f"{name!r}: a key's name is lower-case letters, digits and '-'")
    folder = _keys_dir()
    private_file, public_file = folder / f"{name}.pem", folder / f"{name}.pub"
    if private_file.exists():
        raise PermanentError(f"{private_file} exists")
    private, public, key_id = P.new_signing_key()
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(private_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(private)
    public_file.write_bytes(public)
    print(public_file)
    print(f"[aiart] signing key {name} ({key_id}): the private key is {private_file} (keep it "
          f"secret); give {public_file} to the sites that import your packages "
          "(aiart trust add)", file=sys.stderr)
    return 0


def list_keys() -> int:
    rows = [["NAME", "ID", "FILE"]]
    for file in sorted(_keys_dir().glob("*.pem")) if _keys_dir().is_dir() else []:
        rows.append([file.stem, P.key_id(P.load_private_key(file.read_bytes()).public_key()),
                     str(file)])
    print(table(rows))
    return 0


async def trusted_keys(cluster: DockerCluster) -> list[tuple[ConfigObject, Ed25519PublicKey]]:
    """The keys this swarm trusts, as ``aiart trust add`` keeps them: a config
    named for the key's id, labelled with it, holding the key, and nothing
    else (no model version that also carries the label)."""
    found = []
    for config in await cluster.list_configs(L.PACKAGE_KEY):
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


async def trust(args: argparse.Namespace) -> int:
    async with aiodocker.Docker() as docker:
        cluster = DockerCluster(docker)
        if args.trust_command == "add":
            if not DNS_LABEL.match(args.name):
                raise PermanentError(f"{args.name!r}: a key's name is lower-case letters, "
                                     "digits and '-'")
            try:
                public = P.load_public_key(args.public_key.read_bytes())
            except OSError as exc:
                raise PermanentError(f"{args.public_key}: {exc}") from None
            key_id = P.key_id(public)
            if any(P.key_id(k) == key_id for _, k in await trusted_keys(cluster)):
                print(f"[aiart] key {key_id} is trusted already", file=sys.stderr)
                return 0
            await cluster.create_config(
                f"{L.PACKAGE_KEY_CONFIG_PREFIX}{key_id}", args.public_key.read_bytes(),
                {L.PACKAGE_KEY: key_id, L.PACKAGE_KEY_NAME: args.name,
                 L.MANAGED_BY: L.MANAGED_BY_VALUE})
            print(f"trusted {args.name} ({key_id})")
            return 0
        keys = await trusted_keys(cluster)
        if args.trust_command == "ls":
            print(table([["NAME", "ID", "ADDED"]] + [
                [c.labels.get(L.PACKAGE_KEY_NAME, ""), P.key_id(k), c.created_at]
                for c, k in keys]))
            return 0
        gone = [c for c, k in keys
                if args.name in (c.labels.get(L.PACKAGE_KEY_NAME), P.key_id(k))]
        if not gone:
            raise PermanentError(f"no trusted key is named or has id {args.name!r}")
        for config in gone:
            await cluster.delete_config(config.id)
            print(f"no longer trusted: {config.labels.get(L.PACKAGE_KEY_NAME)} "
                  f"({config.labels.get(L.PACKAGE_KEY)})")
        return 0


def _registry() -> RegistryReader:
    """aiart's registry as this manager reaches it (hack/stack.sh's files)."""
    settings = CLISettings.from_env()
    env_file = Path(settings.registry_env) if settings.registry_env else \
        settings.config_dir / "registry.env"
    password = environment_with(env_file, "AIART_REGISTRY_").get("AIART_REGISTRY_PASSWORD")
    tls = Path(settings.tls_dir) if settings.tls_dir else settings.config_dir / "tls"
    ca = tls / "internal-ca.crt"
    return RegistryReader(f"https://{OperatorSettings.from_env().registry}", password,
                          str(ca) if ca.is_file() else None)


def _declared(config: ConfigObject) -> str:
    try:
        return parse_manifest(config.data).metadata.version
    except ManifestError:
        return config.labels.get(L.VERSION, "")


def _version(configs: list[ConfigObject], name: str, version: str) -> ConfigObject:
    if not configs:
        raise PermanentError(f"no model {name!r} is declared")
    if version:
        chosen = [c for c in configs if _declared(c) == version]
    else:
        chosen = [c for c in configs if c.labels.get(L.STATUS_CURRENT) == "true"]
    if not chosen:
        versions = ", ".join(sorted(map(_declared, configs)))
        raise PermanentError(f"model {name} has no version {version!r} (it has {versions})"
                             if version else f"no version of {name} serves; say which "
                             f"({versions})")
    return chosen[0]


async def export(args: argparse.Namespace) -> int:
    name, _, version = args.model.partition(":")
    key, key_name = (None, "") if args.unsigned else _signing_key(args.key)
    async with aiodocker.Docker() as docker:
        cluster = DockerCluster(docker)
        config = _version(await cluster.list_model_configs(name), name, version)
        try:
            manifest = parse_manifest(config.data)
        except ManifestError as exc:
            raise PermanentError(f"{config.name} is not a valid manifest: {exc}") from None
        version = manifest.metadata.version
        services = [s for s in await cluster.list_services(name)
                    if s.name == service_name(name, version)]
        image = str(((services[0].spec.get("TaskTemplate") or {}).get("ContainerSpec") or {})
                    .get("Image", "")) if services else ""
        # The tag it was built as (the service runs it by digest).
        tag = services[0].labels.get(L.IMAGE_TAG, "") if services else ""
        if "@sha256:" not in image:
            raise PermanentError(f"{name}:{version} runs no image aiart built and pinned yet "
                                 f"(status {config.labels.get(L.STATUS, 'Pending')})")
        store = None
        artifact = manifest.spec.artifact
        if artifact is not None and not artifact.uri.startswith("config://"):
            store = _store()
        fetched = await fetch_artifact(cluster, store, artifact) if artifact else None
    print(f"[aiart] {name}:{version}: image {image}", file=sys.stderr)
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
    registry = _registry()
    try:
        digest = image.partition("@")[2]
        repository = model_repository(name)
        manifest_bytes, media_type, found = await registry.manifest(repository, digest)
        descriptors = json.loads(manifest_bytes)
        parts = [descriptors["config"], *descriptors.get("layers", [])]
        blobs = {d["digest"]: await registry.blob(repository, d["digest"]) for d in parts}
    finally:
        await registry.aclose()
    labels = json.loads(blobs[parts[0]["digest"]]).get("config", {}).get("Labels") or {}
    contents = P.Contents(
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
        image=P.Image(manifest=manifest_bytes, media_type=media_type, blobs=blobs),
        created=config.created_at, format=manifest.spec.runtime.value)
    data = P.to_tar(P.build(contents, key))
    args.output.write_bytes(data)
    print(args.output)
    signed = f"signed with {key_name} ({P.key_id(key.public_key())})" if key else "unsigned"
    print(f"[aiart] {args.output}: {name}:{version}, {len(data):,} bytes, image {found}, "
          f"{signed}", file=sys.stderr)
    return 0


async def import_package(args: argparse.Namespace) -> int:
    """Check the package, put its image into this swarm's registry byte for
    byte (its digest unchanged) and its model file where its manifest says,
    and declare the version: the operator finds the image in the registry
    under the tag it would build, and builds nothing."""
    try:
        files = P.from_tar(args.package.read_bytes())
    except OSError as exc:
        raise PermanentError(f"{args.package}: {exc}") from None
    async with aiodocker.Docker() as docker:
        cluster = DockerCluster(docker)
        keys = await trusted_keys(cluster)
        opened = P.open_package(files, [key for _, key in keys],
                                allow_unsigned=args.allow_unsigned)
        key_name = next((c.labels.get(L.PACKAGE_KEY_NAME, "") for c, key in keys
                         if P.key_id(key) == opened.signer), "")
        contents = opened.contents
        try:
            manifest = parse_manifest(contents.manifest)
        except ManifestError as exc:
            raise PermanentError(f"the package's manifest is not valid here: {exc}") from None
        name, version = manifest.metadata.name, manifest.metadata.version
        if (name, version) != (contents.name, contents.version):
            raise PermanentError(f"the package is {contents.name}:{contents.version} but its "
                                 f"manifest declares {name}:{version}")
        signed = f"signed by {opened.signer}" if opened.signer else "unsigned"
        existing = [c for c in await cluster.list_model_configs(name) if _declared(c) == version]
        if existing:
            if existing[0].data == contents.manifest:
                print(f"[aiart] {name}:{version} is declared here already, as the package has "
                      "it: nothing to do", file=sys.stderr)
                return 0
            raise PermanentError(f"{name}:{version} is declared here with another manifest; "
                                 "remove it first or import another version")
        if contents.image is not None:
            # The tag the operator builds the image as: its recipe's, the same here.
            built_as = str(contents.provenance.get("imageTag", ""))
            tag = built_as.rpartition(":")[2] if ":" in built_as.rpartition("/")[2] else ""
            if not tag:
                raise PermanentError("the package names no tag for its image")
            registry = _registry()
            try:
                for blob in contents.image.blobs.values():
                    await registry.push_blob(model_repository(name), blob)
                pushed = await registry.push_manifest(model_repository(name), tag,
                                                      contents.image.manifest,
                                                      contents.image.media_type)
            finally:
                await registry.aclose()
            print(f"[aiart] image {model_repository(name)}:{tag} in this swarm's registry "
                  f"({pushed})", file=sys.stderr)
        artifact = manifest.spec.artifact
        if artifact is not None:
            await _restore_artifact(cluster, artifact.ref, name, version, contents)
        await cluster.create_config(f"{name}-{version}", contents.manifest, {
            L.MODEL: name, L.CREATED_BY: f"package:{opened.signer or 'unsigned'}",
            L.PACKAGE: json.dumps(P.origin(opened, key_name=key_name, imported_at=now()),
                                  sort_keys=True)})
    print(f"{name}:{version}")
    print(f"[aiart] {args.package}: {name}:{version} declared, {signed}; provenance "
          f"{json.dumps(dict(contents.provenance), sort_keys=True)}", file=sys.stderr)
    return 0


async def _restore_artifact(cluster: DockerCluster, ref: Any, name: str, version: str,
                            contents: P.Contents) -> None:
    data = contents.artifact
    if data is None:
        raise PermanentError("the package's manifest names a model file the package lacks")
    if isinstance(ref, ConfigRef):
        found = await cluster.get_config(ref.name)
        if found is None:
            await cluster.create_config(ref.name, data, {
                L.ARTIFACT_OF: name, L.VERSION: version, L.MANAGED_BY: L.MANAGED_BY_VALUE})
        elif found.data != data:
            raise PermanentError(f"a config {ref.name} exists here with other contents")
        return
    store = _store()
    if isinstance(ref, S3Ref):
        await store.ensure_bucket(ref.bucket)
        await store.put(ref.bucket, ref.key, data)
        return
    run = dict(contents.run or {})
    await store_run(store, name, contents.artifact_name or "model", data,
                    metrics=run.get("metrics"), params=run.get("params"),
                    run_id=str(run.get("runId") or ref.run_id))


async def run_command(args: argparse.Namespace) -> int:
    if args.command == "export":
        return await export(args)
    if args.command == "import":
        return await import_package(args)
    if args.command == "trust":
        return await trust(args)
    if args.key_command == "create":
        return create_key(args.name)
    return list_keys()

