"""The object store and the catalog, chosen from ``AIART_*`` settings."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .catalog import Catalog
from .catalog_docker import ConfigStore, DockerCatalog
from .catalog_mongo import MongoCatalog
from .store import ObjectStore, StoreSettings


def open_store(env: Mapping[str, str] | None = None) -> ObjectStore | None:
    """The configured object store (``AIART_S3_ENDPOINT``), or None."""
    settings = StoreSettings.from_env(env)
    return ObjectStore(settings) if settings is not None else None


def open_catalog(configs: ConfigStore, env: Mapping[str, str] | None = None) -> Catalog:
    """``AIART_CATALOG_URL``: empty or ``docker`` for configs in the swarm,
    ``mongodb://...`` (or ``mongodb+srv://``) for MongoDB."""
    env = os.environ if env is None else env
    # A MongoDB URL holds a password: a Docker secret file is the place for it.
    path = env.get("AIART_CATALOG_URL_FILE")
    if path:
        with open(path, encoding="utf-8") as handle:
            url = handle.read().strip()
    else:
        url = env.get("AIART_CATALOG_URL", "").strip()
    if url.startswith(("mongodb://", "mongodb+srv://")):
        return MongoCatalog.connect(url, env.get("AIART_CATALOG_DATABASE", "aiart"))
    if url in ("", "docker"):
        return DockerCatalog(configs)
    raise ValueError("AIART_CATALOG_URL must be docker or a mongodb:// URL")
