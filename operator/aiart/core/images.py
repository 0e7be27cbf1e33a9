"""The images aiart builds for a model, as its registry holds them: where
they are, what the API shows of them, and which are in use. Pure: no I/O.

Every image of a model (each version's builds, and a batch job's image on
top of one) is a tag in one repository of aiart's registry,
``aiart/<model>``; services run them by digest (``…@sha256:…``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# The media types of a manifest the registry is asked for: an image's
# (Docker's or OCI's), or a list of them (multi-platform).
IMAGE_MANIFESTS = ("application/vnd.docker.distribution.manifest.v2+json",
                   "application/vnd.oci.image.manifest.v1+json")
MANIFEST_LISTS = ("application/vnd.docker.distribution.manifest.list.v2+json",
                  "application/vnd.oci.image.index.v1+json")
ACCEPT = ", ".join((*IMAGE_MANIFESTS, *MANIFEST_LISTS))
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def model_repository(model: str) -> str:
    """The registry repository of a model's images (build/recipes.py tags)."""
    return f"aiart/{model}"


def digest_of(image: str) -> str | None:
    """``host/aiart/m:1-abc@sha256:…`` -> ``sha256:…``; None when not pinned."""
    _, _, digest = image.partition("@")
    return digest if DIGEST.match(digest) else None


def repository_of(image: str, registry: str) -> str | None:
    """``registry/aiart/m:1-abc@sha256:…`` -> ``aiart/m``; None for an image
    of another registry."""
    prefix = f"{registry}/"
    if not image.startswith(prefix):
        return None
    name = image[len(prefix):].partition("@")[0]
    folder, _, last = name.rpartition("/")
    last = last.partition(":")[0]
    return f"{folder}/{last}" if folder else (last or None)


def manifest_blobs(manifest: Mapping[str, Any]) -> list[str]:
    """The digests of an image's config and layers, from its manifest."""
    parts = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
    return [str(part["digest"]) for part in parts if isinstance(part, dict) and part.get("digest")]


def manifest_size(manifest: Mapping[str, Any]) -> int | None:
    """An image's bytes in the registry (its config and layers, compressed),
    from its manifest; None for a list of images, whose size is theirs."""
    if manifest.get("mediaType") in MANIFEST_LISTS or "manifests" in manifest:
        return None
    parts = [manifest.get("config") or {}, *(manifest.get("layers") or [])]
    return sum(int(part.get("size") or 0) for part in parts if isinstance(part, dict))


@dataclass(frozen=True, slots=True, kw_only=True)
class Tagged:
    """One tag of a model's repository, as the registry answers it."""

    tag: str
    digest: str
    size: int | None
    created: str  # the image's creation time (its config), or ""


def in_use(images: Iterable[str]) -> set[str]:
    """The digests among image references (services', versions' status)."""
    return {d for d in map(digest_of, images) if d}


def image_views(tagged: Iterable[Tagged], used: set[str]) -> list[dict[str, Any]]:
    """One entry per image (digest) with its tags, newest first; ``inUse``
    when a service or a declared version runs it."""
    by_digest: dict[str, list[Tagged]] = {}
    for item in tagged:
        by_digest.setdefault(item.digest, []).append(item)
    views = [{"digest": digest, "tags": sorted(t.tag for t in items),
              "size": items[0].size, "created": max(t.created for t in items),
              "inUse": digest in used}
             for digest, items in by_digest.items()]
    return sorted(views, key=lambda v: (v["created"], v["digest"]), reverse=True)
