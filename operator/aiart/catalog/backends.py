"""The catalog, chosen from ``AIART_CATALOG_URL``."""

from __future__ import annotations

from collections.abc import Mapping

from aiart.catalog.configs import ConfigStore, DockerCatalog
from aiart.catalog.mongo import MongoCatalog
from aiart.catalog.records import Catalog
from aiart.core.settings import CatalogSettings


def open_catalog(configs: ConfigStore, env: Mapping[str, str] | None = None) -> Catalog:
    """``AIART_CATALOG_URL``: empty or ``docker`` for configs in the swarm,
    ``mongodb://...`` (or ``mongodb+srv://``) for MongoDB. A MongoDB URL
    holds a password: its ``_FILE`` twin (a Docker secret) is the place for it."""
    settings = CatalogSettings.from_env(env)
    url = settings.url.strip()
    if url.startswith(("mongodb://", "mongodb+srv://")):
        return MongoCatalog.connect(url, settings.database)
    if url in ("", "docker"):
        return DockerCatalog(configs)
    raise ValueError("AIART_CATALOG_URL must be docker or a mongodb:// URL")
