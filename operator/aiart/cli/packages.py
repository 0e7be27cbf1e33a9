"""``aiart export``, ``aiart import``, ``aiart packages key``, ``aiart trust``:
model packages (docs/packages.md) on a manager, as ``aiart keys`` and ``aiart
runs``: the signing keys on this machine, the keys the swarm trusts, and
the moves themselves (transfer/packages.py, which the API's package calls
use too)."""

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
)

from aiart.cli.store import _store
from aiart.cli.table import table
from aiart.core import labels as L
from aiart.core import packages as P
from aiart.core.errors import PermanentError
from aiart.core.settings import CLISettings, OperatorSettings, environment_with
from aiart.core.spec import DNS_LABEL
from aiart.engine.adapter import DockerCluster
from aiart.engine.registry import Pushed, RegistryReader
from aiart.transfer import packages as T


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
            if any(P.key_id(k) == key_id for _, k in await T.trusted_keys(cluster)):
                print(f"[aiart] key {key_id} is trusted already", file=sys.stderr)
                return 0
            await cluster.create_config(
                f"{L.PACKAGE_KEY_CONFIG_PREFIX}{key_id}", args.public_key.read_bytes(),
                {L.PACKAGE_KEY: key_id, L.PACKAGE_KEY_NAME: args.name,
                 L.MANAGED_BY: L.MANAGED_BY_VALUE})
            print(f"trusted {args.name} ({key_id})")
            return 0
        keys = await T.trusted_keys(cluster)
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


async def export(args: argparse.Namespace) -> int:
    name, _, version = args.model.partition(":")
    key, key_name = (None, "") if args.unsigned else _signing_key(args.key)
    registry = _registry()
    # Written beside the output and renamed once whole: an export that fails
    # or is stopped half way leaves no file that looks like a package.
    partial = args.output.with_name(f".{args.output.name}.partial")
    try:
        async with aiodocker.Docker() as docker:
            with partial.open("wb") as out:
                made = await T.export_version(DockerCluster(docker), registry, _store, name,
                                              version, key, out)
        partial.replace(args.output)
    except OSError as exc:
        raise PermanentError(f"{args.output}: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
        await registry.aclose()
    print(f"[aiart] {made.name}:{made.version}: image {made.image}", file=sys.stderr)
    print(args.output)
    signed = f"signed with {key_name} ({made.signer})" if key else "unsigned"
    print(f"[aiart] {args.output}: {made.name}:{made.version}, {made.size:,} bytes, "
          f"image {made.image.partition('@')[2]}, {signed}", file=sys.stderr)
    return 0


async def import_package(args: argparse.Namespace) -> int:
    """Check the package and declare its version here, with its image and
    model file (transfer/packages.py)."""
    registry = _registry()
    try:
        with args.package.open("rb") as package:
            async with aiodocker.Docker() as docker:
                done = await T.import_package(
                    DockerCluster(docker), registry, _store, package,
                    allow_unsigned=args.allow_unsigned)
    except OSError as exc:
        raise PermanentError(f"{args.package}: {exc}") from None
    finally:
        await registry.aclose()
    if not done.declared:
        print(f"[aiart] {done.name}:{done.version} is declared here already, as the package "
              "has it: nothing to do", file=sys.stderr)
        return 0
    if done.image:
        moved = ", ".join(f"{done.moved.get(how.value, 0) / 1e6:.1f} MB {what}" for how, what in (
            (Pushed.SENT, "sent"), (Pushed.LINKED, "linked from other models' images"),
            (Pushed.THERE, "there already")))
        print(f"[aiart] image {done.image} in this swarm's registry: {moved}", file=sys.stderr)
    signed = f"signed by {done.signer}" if done.signer else "unsigned"
    print(f"{done.name}:{done.version}")
    print(f"[aiart] {args.package}: {done.name}:{done.version} declared, {signed}; provenance "
          f"{json.dumps(dict(done.origin), sort_keys=True)}", file=sys.stderr)
    return 0


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

