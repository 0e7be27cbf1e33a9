"""Builds runtime and model images through the engine, and pushes them.

Runtime images are built once per (runtime, library versions, aiart runtime
source); model images add one thin layer holding the artifact. Wheels come
from a wheelhouse that this module fills with ``pip download`` for the
image's Python and platform, cached on disk by requirement set, so that an
image build needs no network and a second one downloads nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import platform
import sys
from pathlib import Path

from aiart.build.recipes import (
    BATCH_REQUIREMENTS,
    BatchRecipe,
    ModelRecipe,
    RuntimeRecipe,
    runtime_files,
)
from aiart.core import labels as L
from aiart.core.errors import PermanentError, TransientError
from aiart.engine.adapter import DockerCluster, tar_context

log = logging.getLogger("aiart.build")

_PLATFORMS = {
    "x86_64": ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "aarch64": ("manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"),
}
# Locks per image tag, so two models needing one runtime build it once.
_locks: dict[str, asyncio.Lock] = {}


def _lock(key: str) -> asyncio.Lock:
    return _locks.setdefault(key, asyncio.Lock())


async def fill_wheelhouse(
    requirements: tuple[str, ...], *, python_version: str, cache_dir: Path
) -> Path:
    """Download wheels for the image's Python and platform; cached by requirement set."""
    key = hashlib.sha256("\n".join((python_version, *requirements)).encode()).hexdigest()[:16]
    target = cache_dir / "wheels" / key
    if (target / ".complete").exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    machine = platform.machine()
    plats = [arg for p in _PLATFORMS.get(machine, ()) for arg in ("--platform", p)]
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
        *plats, "--dest", str(target), *requirements,
    ]
    log.info("downloading wheels: %s", " ".join(requirements),
             extra={"fields": {"requirements": list(requirements)}})
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await process.communicate()
    if process.returncode != 0:
        text = stderr.decode(errors="replace")
        if "No matching distribution" in text or "Could not find a version" in text:
            wanted = " ".join(requirements[:2])
            raise PermanentError(
                f"no wheels for {wanted} on Python {python_version} ({machine}): "
                "that version cannot be installed in a runtime image; re-save the model "
                "with a supported scikit-learn, or pin spec.framework"
            )
        raise TransientError(f"downloading wheels failed: {text.strip()[-400:]}")
    (target / ".complete").write_text("ok\n")
    return target


class ImageBuilder:
    def __init__(self, cluster: DockerCluster, *, cache_dir: Path, timeout: float,
                 builds: int = 2) -> None:
        self.cluster = cluster
        self.cache_dir = cache_dir
        self.timeout = timeout
        # Builds run a few at a time, first come first served: each loads
        # its model to check it (seconds of CPU), and a burst of them side
        # by side on a small manager finished all late rather than the
        # first ones soon; the passes waiting behind them cost nothing.
        self._builds = asyncio.Semaphore(builds)
        # model image tag -> the runtime image it is built on, and the runtime
        # images whose layers one push of this process has put in the registry.
        self._runtime_of: dict[str, str] = {}
        self._runtime_pushed: set[str] = set()

    async def ensure_runtime(self, recipe: RuntimeRecipe) -> str:
        tag = recipe.tag
        async with _lock(tag):
            if await self.cluster.image_exists(tag):
                return tag
            wheels = await fill_wheelhouse(
                recipe.requirements, python_version=recipe.python_version,
                cache_dir=self.cache_dir,
            )
            files = {"Dockerfile": recipe.dockerfile().encode()}
            for name, content in runtime_files().items():
                files[f"aiart_runtime/{name}"] = content
            for wheel in sorted(wheels.glob("*.whl")):
                files[f"wheels/{wheel.name}"] = wheel.read_bytes()
            for name, data in recipe.files:
                files[f"extra/{name}"] = data
            await self._build("runtime", tag, files, {
                L.RUNTIME: recipe.runtime, L.RUNTIME_RECIPE: recipe.recipe_hash,
                L.MANAGED_BY: L.MANAGED_BY_VALUE})
            return tag

    async def ensure_model_image(self, recipe: ModelRecipe, *, push: bool = True) -> str:
        tag = recipe.tag
        self._runtime_of[tag] = recipe.runtime_image
        async with _lock(tag):
            if not await self.cluster.image_exists(tag):
                files = {
                    "Dockerfile": recipe.dockerfile().encode(),
                    "model/model.json": recipe.settings_json,
                    f"model/{recipe.artifact_name}": recipe.artifact,
                }
                # No network: the build's check step loads the user's pickle or code.
                await self._build("model", tag, files, {
                    L.MANAGED_BY: L.MANAGED_BY_VALUE, L.MODEL: recipe.name,
                    L.VERSION: recipe.version}, network=False)
        if push:
            await self.push_image(tag)
        return tag

    async def ensure_batch_image(self, recipe: BatchRecipe) -> str:
        """A batch job's image (built on the model's, which must be here),
        pushed: a job's task may run on any node."""
        tag = recipe.tag
        async with _lock(tag):
            if not await self.cluster.image_exists(tag):
                wheels = await fill_wheelhouse(
                    BATCH_REQUIREMENTS, python_version=recipe.python_version,
                    cache_dir=self.cache_dir)
                files = {"Dockerfile": recipe.dockerfile().encode()}
                for wheel in sorted(wheels.glob("*.whl")):
                    files[f"wheels/{wheel.name}"] = wheel.read_bytes()
                await self._build("batch", tag, files, {L.MANAGED_BY: L.MANAGED_BY_VALUE},
                                  network=False)
        await self.push_image(tag)
        return tag

    async def _build(self, kind: str, tag: str, files: dict[str, bytes],
                     labels: dict[str, str], *, network: bool = True) -> None:
        async with self._builds:  # its turn
            log.info("building %s image %s", kind, tag)
            await self.cluster.build_image(context=tar_context(files), tag=tag,
                                           timeout=self.timeout, labels=labels, network=network)

    async def push_image(self, tag: str) -> None:
        async with _lock(tag):
            runtime = self._runtime_of.get(tag)
            if runtime is not None and runtime not in self._runtime_pushed:
                # The first push of a runtime's layers goes alone. Pushes
                # beside it would each upload the same layers (hundreds of MB
                # for scikit-learn), since none has them in the registry yet;
                # after it, the engine mounts them into each new repository
                # and a model's push carries its own thin layer only.
                async with _lock(f"first push of {runtime}"):
                    if runtime not in self._runtime_pushed:
                        await self.cluster.push_image(tag)
                        self._runtime_pushed.add(runtime)
                        self._runtime_of.pop(tag, None)
                        return
            await self.cluster.push_image(tag)
            # Pushed: forget it (a later build records it again).
            self._runtime_of.pop(tag, None)
