"""``aiart-api``: the REST API and the dashboard beside it, one service
behind the gateway (``/api/v1`` and ``/ui``)."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette

from aiart.api.app import create_app, from_settings
from aiart.auth.keystore import KeyCache
from aiart.auth.serving import serve_with_keys
from aiart.auth.tokens import TokenVerifier
from aiart.catalog.backends import open_catalog
from aiart.core.settings import ServiceSettings
from aiart.ui.oidc import OidcSignIn
from aiart.ui.pages import ROUTES


def main() -> None:
    from aiart.store.client import open_store

    settings = ServiceSettings.from_env()
    signin = OidcSignIn.from_env()

    def app(cluster: Any, keys: KeyCache) -> Starlette:
        made = create_app(cluster, open_store(), keys, TokenVerifier.from_env(),
                          max_upload_bytes=settings.max_upload_bytes,
                          catalog=open_catalog(cluster), pages=ROUTES,
                          **from_settings(settings))
        made.state.signin = signin  # the pages' OIDC sign-in, where configured
        return made

    serve_with_keys(app,
        port=settings.api_port, what="aiart API and dashboard", service_name="aiart-api")


if __name__ == "__main__":
    main()
