"""A model's images as the API shows them (operator/aiart/core/images.py)."""

from __future__ import annotations

from aiart.build.recipes import ModelRecipe
from aiart.core.images import (
    Tagged,
    digest_of,
    image_views,
    in_use,
    manifest_blobs,
    manifest_size,
    model_repository,
    repository_of,
)

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_a_models_images_are_in_its_repository() -> None:
    recipe = ModelRecipe(name="iris", version="1", runtime_image="r", artifact_name="m.pkl",
                         artifact=b"x", settings_json=b"{}", registry="localhost:5000")
    assert recipe.tag.startswith(f"localhost:5000/{model_repository('iris')}:1-")


def test_digests_of_pinned_references_only() -> None:
    assert digest_of(f"localhost:5000/aiart/iris:1-abc@{A}") == A
    assert digest_of("localhost:5000/aiart/iris:1-abc") is None
    assert digest_of("x@sha256:short") is None
    assert in_use([f"h/aiart/iris@{A}", "h/aiart/iris:1", "", f"h/aiart/iris:2@{A}"]) == {A}


def test_the_repository_of_an_image_of_this_registry_only() -> None:
    assert repository_of(f"localhost:5000/aiart/iris:1-abc@{A}", "localhost:5000") == "aiart/iris"
    assert repository_of(f"localhost:5000/aiart/iris@{A}", "localhost:5000") == "aiart/iris"
    assert repository_of("localhost:5000/aiart/iris:1", "localhost:5000") == "aiart/iris"
    assert repository_of("localhost:5000/solo:1", "localhost:5000") == "solo"
    assert repository_of(f"localhost:5001/aiart/iris:1@{A}", "localhost:5000") is None
    assert repository_of("team/image:1", "localhost:5000") is None


def test_an_images_blobs_are_its_config_and_layers() -> None:
    manifest = {"config": {"digest": A, "size": 1}, "layers": [{"digest": B}, {"size": 3}]}
    assert manifest_blobs(manifest) == [A, B]
    assert manifest_blobs({"manifests": [{"digest": A}]}) == []


def test_an_images_size_is_its_config_and_layers() -> None:
    manifest = {"mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {"size": 100}, "layers": [{"size": 1000}, {"size": 20}]}
    assert manifest_size(manifest) == 1120
    assert manifest_size({"mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": [{"size": 5}]}) is None


def test_one_entry_per_image_newest_first_marked_in_use() -> None:
    views = image_views([
        Tagged(tag="1-old", digest=A, size=10, created="2026-12-01T00:00:00Z"),
        Tagged(tag="2-new", digest=B, size=20, created="2026-12-05T00:00:00Z"),
        Tagged(tag="2-new-batch-1", digest=B, size=20, created="2026-12-05T00:00:00Z"),
    ], used={B})
    assert [(v["digest"], v["tags"], v["inUse"]) for v in views] == [
        (B, ["2-new", "2-new-batch-1"], True), (A, ["1-old"], False)]
