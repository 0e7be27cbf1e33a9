"""The catalog, chosen from ``AIART_CATALOG_URL``."""

from __future__ import annotations

import os
from collections.abc import Mapping

from aiart.catalog.configs import ConfigStore, DockerCatalog
from aiart.catalog.mongo import MongoCatalog
from aiart.catalog.records import Catalog


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
