"""``aiart keys create|ls|revoke``: API keys for models and aiart's API."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import aiodocker

from aiart.auth.access import AccessError, Role, new_key
from aiart.auth.keystore import KeyStore
from aiart.cli.table import table
from aiart.core.errors import PermanentError
from aiart.engine.adapter import DockerCluster


def add_commands(commands: Any) -> None:
    keys = commands.add_parser("keys", help="API keys (stored as digests; shown once)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key; prints it once")
    create.add_argument("name", help="who or what the key is for, e.g. ci or line-3-scada")
    create.add_argument("--role", default=Role.VIEWER.value, choices=[r.value for r in Role])
    create.add_argument("--model", action="append", default=[], metavar="NAME",
                        help="a model the key may call (repeatable; default: every model)")
    create.add_argument("--json", action="store_true")
    ls = key_commands.add_parser("ls", help="list keys (never their secrets)")
    ls.add_argument("--json", action="store_true")
    revoke = key_commands.add_parser("revoke", help="revoke keys by name or id")
    revoke.add_argument("name")


async def run_command(args: argparse.Namespace) -> int:
    async with aiodocker.Docker() as docker:
        store = KeyStore(DockerCluster(docker))
        if args.keys_command == "create":
            try:
                text, record = new_key(args.name, Role(args.role), args.model)
            except AccessError as exc:
                raise PermanentError(str(exc)) from None
            await store.add(record)
            if args.json:
                print(json.dumps({"key": text, **json.loads(record.to_json())}))
            else:
                print(text)
                print(f"[aiart] key {record.name} ({record.id}), role {record.role.value}, "
                      f"models {', '.join(record.models)}: it is shown only now",
                      file=sys.stderr)
            return 0
        if args.keys_command == "ls":
            keys = await store.keys()
            if args.json:
                print(json.dumps([json.loads(k.to_json()) for k in keys], indent=2))
                return 0
            rows = [["ID", "NAME", "ROLE", "MODELS", "CREATED"]] + [
                [k.id, k.name, k.role.value, ",".join(k.models), k.created] for k in keys]
            print(table(rows))
            return 0
        removed = await store.revoke(args.name)
        if not removed:
            raise PermanentError(f"no key is named or has id {args.name!r}")
        for key in removed:
            print(f"revoked {key.name} ({key.id})")
        return 0
