"""``aiart``: the command line: runtime images, training runs, the catalog."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import aiodocker

from aiart.build.kinds import KINDS
from aiart.cli import api as cli_api
from aiart.cli import keys as cli_keys
from aiart.cli import packages as cli_packages
from aiart.cli.store import add_commands, run_command
from aiart.core.errors import PermanentError, TransientError
from aiart.core.settings import OperatorSettings
from aiart.engine.adapter import DockerCluster


async def _build_runtime(args: argparse.Namespace) -> str:
    # Here rather than with the module: the builder and its templates are
    # this command's alone, and every other command would pay for them.
    from aiart.build.image_builder import ImageBuilder
    from aiart.build.recipes import h2o_runtime, onnx_runtime, sklearn_runtime

    settings = OperatorSettings.from_env()
    base = args.base_image or settings.base_image
    if args.runtime == "onnx":
        recipe = onnx_runtime(base_image=base, python_version=settings.python_version)
    elif args.runtime == "h2o":
        if args.genmodel_bytes is None:
            raise PermanentError("--genmodel-jar PATH is needed for the h2o runtime")
        recipe = h2o_runtime(genmodel_jar=args.genmodel_bytes, base_image=base,
                             python_version=settings.python_version)
    else:
        if not args.sklearn:
            raise PermanentError("--sklearn VERSION is needed for the sklearn runtime")
        recipe = sklearn_runtime(sklearn=args.sklearn, numpy_major=args.numpy_major,
                                 base_image=base, python_version=settings.python_version)
    async with aiodocker.Docker() as docker:
        builder = ImageBuilder(DockerCluster(docker), cache_dir=Path(args.cache_dir),
                               timeout=settings.build_timeout_seconds)
        return await builder.ensure_runtime(recipe)


API_COMMANDS = ("deploy", "ls", "status", "logs", "rm", "predict", "rollout", "batch")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aiart", description="AI Analytics Runtime for Swarm")
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build-runtime", help="build a runtime image if it is missing")
    build.add_argument("--runtime", default="sklearn",
                       choices=[k.runtime.value for k in KINDS.values() if k.prebuilt])
    build.add_argument("--genmodel-jar", help="h2o-genmodel.jar (h2o runtime)")
    build.add_argument("--sklearn", help="scikit-learn version, e.g. 1.9.1 (sklearn runtime)")
    build.add_argument("--numpy-major", type=int, default=2, choices=(1, 2))
    build.add_argument("--base-image", default="", help="image to build on (AIART_BASE_IMAGE)")
    build.add_argument("--cache-dir", default=str(Path.home() / ".cache" / "aiart"))
    add_commands(commands)
    cli_keys.add_commands(commands)
    cli_packages.add_commands(commands)
    cli_api.add_commands(commands)
    args = parser.parse_args(argv)
    # Say what is happening: a runtime build downloads wheels and can take minutes.
    logging.basicConfig(level=logging.INFO, format="[aiart] %(message)s", stream=sys.stderr)
    # The HTTP client logs every request at INFO: noise in a command's output.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.command == "build-runtime":
        args.genmodel_bytes = Path(args.genmodel_jar).read_bytes() if args.genmodel_jar else None
        try:
            tag = asyncio.run(_build_runtime(args))
        except (PermanentError, TransientError) as exc:
            print(f"aiart: {exc}", file=sys.stderr)
            return 1
        print(tag)
        return 0
    try:
        if args.command == "keys":
            return asyncio.run(cli_keys.run_command(args))
        if args.command in ("export", "import", "packages", "trust"):
            return asyncio.run(cli_packages.run_command(args))
        if args.command in API_COMMANDS:
            return cli_api.run_command(args)
        return asyncio.run(run_command(args))
    except cli_api.CliError as exc:
        print(f"aiart: {exc}", file=sys.stderr)
        return exc.code
    except (PermanentError, TransientError, ValueError) as exc:
        print(f"aiart: {exc}", file=sys.stderr)
        return 1
    except aiodocker.DockerError as exc:
        print(f"aiart: Docker Engine: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
