"""Preparing a version: its artifact read and its runtime chosen (the image
to build, or a ready one), and the store keys it is given when it asks."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

from aiart.build.kinds import kind_of
from aiart.build.recipes import (
    ModelRecipe,
    RuntimeRecipe,
)
from aiart.control.deps import Deps
from aiart.core import labels as L
from aiart.core.errors import PermanentError
from aiart.core.images import model_repository
from aiart.core.packages import imported_image
from aiart.core.plan import VersionPlan
from aiart.core.render import (
    StoreAccess,
    model_settings,
)
from aiart.core.spec import Manifest, Runtime
from aiart.store.artifacts import Fetched, fetch_artifact
from aiart.store.policy import access_key_for, key_secret_name, secret_for

log = logging.getLogger("aiart.reconcile")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A version's inputs resolved to an image: what to deploy, and how to build it."""

    image: str
    inputs: str  # a hash of everything the image is made from
    recipe: ModelRecipe | None = None  # None: a ready or imported image, nothing to build
    runtime: RuntimeRecipe | None = None
    artifact: Fetched | None = None
    pinned: str = ""  # the digest it must run (an imported package's image); "" none


async def prepare(deps: Deps, plan: VersionPlan) -> Prepared:
    """Read the artifact and pick the runtime; PermanentError says what is wrong."""
    manifest = plan.manifest
    assert manifest is not None
    if manifest.spec.runtime is Runtime.IMAGE:
        assert manifest.spec.image is not None
        image = manifest.spec.image
        inputs = hashlib.sha256(f"{plan.config.id}\0{image}".encode()).hexdigest()[:16]
        return Prepared(image=image, inputs=inputs)
    artifact_ref = manifest.spec.artifact
    assert artifact_ref is not None
    artifact = await fetch_artifact(deps.cluster, deps.store, artifact_ref)
    imported = imported_image(plan.config.labels.get(L.PACKAGE, ""))
    if imported is not None:
        # The image the package brought, as it is: no runtime is chosen and
        # nothing is built, so that another aiart version (another recipe,
        # another tag) runs the same bytes as the exporting site.
        tag, pinned = imported
        image = f"{deps.settings.registry}/{model_repository(manifest.metadata.name)}:{tag}"
        inputs = hashlib.sha256(f"{plan.config.id}\0{image}@{pinned}".encode()).hexdigest()[:16]
        return Prepared(image=image, inputs=inputs, artifact=artifact, pinned=pinned)
    kind = kind_of(manifest)
    runtime = kind.serve_with(deps.settings, manifest, artifact.data, artifact.name)
    runtime_tag = runtime if isinstance(runtime, str) else runtime.tag
    settings_file = model_settings(manifest, kind.artifact_file(manifest))
    recipe = ModelRecipe(
        name=manifest.metadata.name,
        version=manifest.metadata.version,
        runtime_image=runtime_tag,
        artifact_name=settings_file.artifact.name,
        artifact=artifact.data,
        settings_json=settings_file.to_json(),
        registry=deps.settings.registry,
    )
    inputs = hashlib.sha256(f"{plan.config.id}\0{recipe.tag}".encode()).hexdigest()[:16]
    return Prepared(image=recipe.tag, inputs=inputs, recipe=recipe,
                    runtime=None if isinstance(runtime, str) else runtime, artifact=artifact)


async def store_access(deps: Deps, manifest: Manifest) -> StoreAccess | None:
    """The endpoint and key secrets a model that asks for the store is given:
    keys of its own, for the store gateway, never the store's."""
    if not manifest.spec.wants_store:
        return None
    asked = "spec.store.credentials" if manifest.spec.store.credentials else "spec.logging"
    return await model_store_keys(deps, manifest.metadata.name, asked)


async def model_store_keys(deps: Deps, model: str, asked: str) -> StoreAccess:
    """The model's own store keys as Docker secrets (made if missing), and
    where the store gateway is; ``asked``: what needs them, for the error."""
    settings = deps.settings
    if deps.store is None or not settings.model_store_endpoint or deps.store_gateway_key is None:
        raise PermanentError(f"{asked}: no store gateway is configured here "
                             "(AIART_S3_MODEL_ENDPOINT, AIART_STORE_GATEWAY_KEY_FILE); aiart "
                             "gives a model keys of its own, never the store's")
    access_key = access_key_for(model)
    ids = []
    for what, value in (("access", access_key),
                        ("secret", secret_for(deps.store_gateway_key, access_key))):
        name = key_secret_name(model, what, value)
        secret_id = await deps.cluster.ensure_secret(
            name, value.encode(), {L.MANAGED_BY: L.MANAGED_BY_VALUE, L.MODEL: model})
        ids.append((secret_id, name))
    return StoreAccess(endpoint=settings.model_store_endpoint, secure=settings.model_store_secure,
                       access_key_secret=ids[0], secret_key_secret=ids[1])
