"""How the image builder pushes model images: the first push of a runtime's
layers goes alone, so that a burst of new models uploads them once rather
than once per model; after it, pushes run side by side."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, cast

import pytest
from aiart.build.image_builder import ImageBuilder
from aiart.build.recipes import ModelRecipe
from aiart.core.errors import TransientError
from aiart.engine.adapter import DockerCluster


class PushRecorder:
    """Stands in for the engine: a push takes a moment, and the recorder
    notes how many ran at once and in which order they ended."""

    def __init__(self, fail_first: int = 0) -> None:
        self.running = 0
        self.most_at_once: list[int] = []  # per push, the most pushes seen running with it
        self.done: list[str] = []
        self.fail_first = fail_first

    async def image_exists(self, tag: str) -> bool:
        return True  # built already: these tests are about pushing

    async def push_image(self, tag: str) -> None:
        self.running += 1
        seen = self.running
        try:
            for _ in range(5):
                await asyncio.sleep(0.01)
                seen = max(seen, self.running)
            if self.fail_first:
                self.fail_first -= 1
                raise TransientError("the registry is away")
            self.done.append(tag)
        finally:
            self.most_at_once.append(seen)
            self.running -= 1


def recipe(name: str, runtime: str = "aiart/runtime-sklearn:1") -> ModelRecipe:
    return ModelRecipe(name=name, version="1", runtime_image=runtime, artifact_name="model.pkl",
                       artifact=name.encode(), settings_json=b"{}", registry="registry:5000")


def builder(engine: PushRecorder, tmp_path: Path) -> ImageBuilder:
    return ImageBuilder(cast(DockerCluster, engine), cache_dir=tmp_path, timeout=60)


async def push_all(images: ImageBuilder, recipes: list[ModelRecipe]) -> list[Any]:
    return await asyncio.gather(
        *(images.ensure_model_image(r) for r in recipes), return_exceptions=True)


async def test_the_first_push_of_a_runtime_goes_alone_and_the_rest_side_by_side(
        tmp_path: Path) -> None:
    engine = PushRecorder()
    images = builder(engine, tmp_path)
    recipes = [recipe(f"m{i}") for i in range(4)]
    await push_all(images, recipes)
    assert sorted(engine.done) == sorted(r.tag for r in recipes)
    first, *rest = engine.most_at_once
    assert first == 1, "the first push had company: each would upload the runtime's layers"
    assert max(rest) == 3, "after the first push, the others should run side by side"


async def test_each_runtime_has_its_own_first_push(tmp_path: Path) -> None:
    engine = PushRecorder()
    images = builder(engine, tmp_path)
    await push_all(images, [recipe("a", "aiart/runtime-sklearn:1"),
                            recipe("b", "aiart/runtime-onnx:1")])
    # Two runtimes share no layers worth waiting for: both first pushes run at once.
    assert engine.most_at_once == [2, 2]


async def test_a_failed_first_push_leaves_the_next_one_alone_again(tmp_path: Path) -> None:
    engine = PushRecorder(fail_first=1)
    images = builder(engine, tmp_path)
    recipes = [recipe(f"m{i}") for i in range(3)]
    results = await push_all(images, recipes)
    assert isinstance(results[0], TransientError)
    # The failed push put nothing in the registry, so the next push is again
    # the first one and runs alone; only the last runs after it.
    assert engine.most_at_once == [1, 1, 1]
    assert engine.done == [recipes[1].tag, recipes[2].tag]


async def test_a_later_push_of_a_pushed_runtime_does_not_wait(tmp_path: Path) -> None:
    engine = PushRecorder()
    images = builder(engine, tmp_path)
    await push_all(images, [recipe("first")])
    await push_all(images, [recipe("x"), recipe("y")])
    assert engine.most_at_once[1:] == [2, 2]


async def test_what_a_pushed_image_was_built_on_is_not_kept(tmp_path: Path) -> None:
    # One entry per model image for the operator's lifetime would grow
    # with every model ever built.
    engine = PushRecorder(fail_first=1)
    images = builder(engine, tmp_path)
    results = await push_all(images, [recipe("a"), recipe("b")])
    assert isinstance(results[0], TransientError)
    assert list(images._runtime_of) == [recipe("a").tag]  # kept for its retry
    await push_all(images, [recipe("a")])
    assert images._runtime_of == {}


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(pytest.main([__file__]))


class BuildRecorder(PushRecorder):
    """An engine where no image is built yet: notes how many builds ran at once."""

    def __init__(self) -> None:
        super().__init__()
        self.building = 0
        self.most_building = 0
        self.built: list[str] = []

    async def image_exists(self, tag: str) -> bool:
        return tag in self.built

    async def build_image(self, *, tag: str, **_: Any) -> None:
        self.building += 1
        self.most_building = max(self.most_building, self.building)
        try:
            await asyncio.sleep(0.02)
            self.built.append(tag)
        finally:
            self.building -= 1


async def test_builds_run_a_few_at_a_time_in_the_order_they_came(tmp_path: Path) -> None:
    engine = BuildRecorder()
    images = ImageBuilder(cast(DockerCluster, engine), cache_dir=tmp_path, timeout=60, builds=2)
    recipes = [recipe(f"m{i}") for i in range(6)]
    await asyncio.gather(*(images.ensure_model_image(r, push=False) for r in recipes))
    assert engine.most_building == 2, "more builds ran at once than allowed (or fewer)"
    assert engine.built == [r.tag for r in recipes], "a later build overtook an earlier one"
