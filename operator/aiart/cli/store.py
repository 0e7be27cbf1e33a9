"""``aiart runs ...``, ``aiart inputs put``, ``aiart models`` and ``aiart
history``: training runs and batch jobs' inputs in the object store, and the
catalog of deployments, from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiodocker
from aiart_runtime.settings import BATCH_FORMATS

from aiart.catalog.backends import open_catalog
from aiart.catalog.records import Deployment, Query
from aiart.cli.table import table
from aiart.core.errors import PermanentError
from aiart.core.settings import CLISettings, environment_with
from aiart.core.status import Phase
from aiart.core.store_layout import bucket_for
from aiart.engine.adapter import DockerCluster
from aiart.store.client import ObjectStore, open_store
from aiart.store.runs import list_runs, upload_run


def add_commands(commands: Any) -> None:
    runs = commands.add_parser("runs", help="training runs in a model's bucket")
    run_commands = runs.add_subparsers(dest="runs_command", required=True)
    up = run_commands.add_parser("upload", help="store a training run; prints its id")
    up.add_argument("model", help="the model the run belongs to (its bucket is aiart-MODEL)")
    up.add_argument("model_file", type=Path, help="the trained model file")
    up.add_argument("--metrics", type=Path, help="a JSON file of metrics")
    up.add_argument("--params", type=Path, help="a JSON file of parameters")
    up.add_argument("--file", action="append", default=[], metavar="[NAME=]PATH",
                    help="another file of the run, stored under files/NAME (repeatable)")
    up.add_argument("--json", action="store_true", help="print the run record as JSON")
    ls = run_commands.add_parser("ls", help="list a model's stored runs")
    ls.add_argument("model")
    ls.add_argument("--json", action="store_true")

    inputs = commands.add_parser("inputs", help="files for batch jobs in a model's bucket")
    input_commands = inputs.add_subparsers(dest="inputs_command", required=True)
    put = input_commands.add_parser("put", help="store files under a prefix of the model's "
                                                "bucket; prints the s3:// address to score")
    put.add_argument("model")
    put.add_argument("paths", nargs="+", type=Path, metavar="FILE")
    put.add_argument("--prefix", default="inputs/", help="where, e.g. inputs/2026-12-05/")

    models = commands.add_parser("models", help="deployments recorded in the catalog")
    models.add_argument("--name")
    models.add_argument("--version")
    models.add_argument("--runtime")
    models.add_argument("--status", help="e.g. Ready, Failed")
    models.add_argument("--label", action="append", default=[], metavar="KEY=VALUE")
    models.add_argument("--all", action="store_true",
                        help="every deployment, not only the latest of each version")
    models.add_argument("--json", action="store_true")
    history = commands.add_parser("history", help="a model's deployments and status changes")
    history.add_argument("name")
    history.add_argument("--json", action="store_true")


def _json_file(path: Path | None, what: str) -> Any:
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise PermanentError(f"--{what} {path}: {exc}") from None


def _run_files(items: Sequence[str]) -> list[tuple[str, Path]]:
    out = []
    for item in items:
        name, sep, path = item.partition("=")
        out.append((name, Path(path)) if sep else (Path(item).name, Path(item)))
    for _, file in out:
        if not file.is_file():
            raise PermanentError(f"--file {file}: no such file")
    return out


def store_env_file() -> Path:
    """Where hack/stack.sh leaves the store's endpoint and keys for the CLI."""
    settings = CLISettings.from_env()
    return Path(settings.store_env) if settings.store_env else settings.config_dir / "store.env"


def _store() -> ObjectStore:
    # The environment's store, or else the one hack/stack.sh wrote down.
    store = open_store() or open_store(environment_with(store_env_file(), "AIART_S3_"))
    if store is None:
        raise PermanentError("no object store configured: set AIART_S3_ENDPOINT, "
                             f"AIART_S3_ACCESS_KEY and AIART_S3_SECRET_KEY (or {store_env_file()})")
    return store


async def _put_inputs(args: argparse.Namespace) -> int:
    prefix = args.prefix.strip("/") + "/"
    if prefix == "/" or prefix.startswith("jobs/") or ".." in prefix.split("/"):
        raise PermanentError(f"--prefix {args.prefix!r}: a folder such as inputs/day1/, "
                             "not jobs/ (where jobs write)")
    for path in args.paths:
        if not path.is_file():
            raise PermanentError(f"{path}: no such file")
        if not path.name.endswith(BATCH_FORMATS):
            raise PermanentError(f"{path}: a batch job reads {', '.join(BATCH_FORMATS)} files")
    store, bucket = _store(), bucket_for(args.model)
    await store.ensure_bucket(bucket)
    for path in args.paths:
        print(f"[aiart] s3://{bucket}/{prefix}{path.name} ({path.stat().st_size} bytes)",
              file=sys.stderr)
        await store.put(bucket, f"{prefix}{path.name}", path.read_bytes())
    print(f"s3://{bucket}/{prefix}")
    return 0


async def run_command(args: argparse.Namespace) -> int:
    if args.command == "inputs":
        return await _put_inputs(args)
    if args.command == "runs":
        store = _store()
        if args.runs_command == "upload":
            if not args.model_file.is_file():
                raise PermanentError(f"{args.model_file}: no such file")
            print(f"[aiart] uploading run of {args.model} to {store.endpoint}", file=sys.stderr)
            record = await upload_run(
                store, args.model, args.model_file,
                metrics=_json_file(args.metrics, "metrics"),
                params=_json_file(args.params, "params"), files=_run_files(args.file))
            if args.json:
                print(record.to_json().decode())
            else:
                print(record.run_id)
                print(f"[aiart] deploy it with artifact uri run://{args.model}/{record.run_id}",
                      file=sys.stderr)
            return 0
        records = await list_runs(store, args.model)
        if args.json:
            print(json.dumps([json.loads(r.to_json()) for r in records], indent=2))
        else:
            print(table([["RUN", "CREATED", "MODEL FILE", "BYTES", "SHA256"]] + [
                [r.run_id, r.created, r.model_file, r.size, r.sha256[:12]] for r in records]))
        return 0

    async with aiodocker.Docker() as docker:
        catalog = open_catalog(DockerCluster(docker))
        if args.command == "models":
            labels = {}
            for item in args.label:
                key, sep, value = item.partition("=")
                if not sep:
                    raise PermanentError(f"--label {item!r}: use KEY=VALUE")
                labels[key] = value
            status = args.status
            if status and status.capitalize() not in {p.value for p in Phase} | {"Removed"}:
                raise PermanentError(f"--status {status!r}: one of "
                                     f"{', '.join(p.value for p in Phase)}")
            found = await catalog.find(Query(name=args.name, version=args.version,
                                             runtime=args.runtime, status=status, labels=labels))
            if not args.all:
                found = _latest_per_version(found)
            _print_deployments(found, args.json)
            return 0
        found = await catalog.find(Query(name=args.name))
        if not found:
            raise PermanentError(f"the catalog has no deployment of {args.name!r}")
        if args.json:
            print(json.dumps([d.to_doc() for d in reversed(found)], indent=2))
            return 0
        for d in reversed(found):
            print(f"{d.model}:{d.version}  config {d.config_id[:12]}  runtime {d.runtime}  "
                  f"deployed {d.deployed_at}")
            print(f"  image {d.image_digest or d.image}")
            print(f"  artifact {d.artifact_uri} sha256 {d.artifact_sha256[:16]}"
                  + (f"  run {d.run_id}" if d.run_id else ""))
            for event in d.history:
                print(f"  {event.at}  {event.status:<9} {event.message}")
        return 0


def _latest_per_version(found: list[Deployment]) -> list[Deployment]:
    seen: set[tuple[str, str]] = set()
    out = []
    for d in found:  # newest first
        if (d.model, d.version) not in seen:
            seen.add((d.model, d.version))
            out.append(d)
    return out


def _print_deployments(found: list[Deployment], as_json: bool) -> None:
    if as_json:
        print(json.dumps([d.to_doc() for d in found], indent=2))
        return
    print(table([["MODEL", "VERSION", "RUNTIME", "STATUS", "RUN", "DEPLOYED", "ARTIFACT"]] + [
        [d.model, d.version, d.runtime, d.status, d.run_id or "-", d.deployed_at,
         d.artifact_uri] for d in found]))
