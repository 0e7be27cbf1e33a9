"""How the programs that check API keys are run (the auth service and the
API): an engine connection, the key cache refreshed in the background,
uvicorn over HTTPS."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiart_runtime import logs, tracing

from aiart.auth.keystore import KeyCache
from aiart.core.settings import LogSettings, ServiceSettings

log = logging.getLogger("aiart.auth")


def serve_with_keys(build: Callable[[Any, KeyCache], Any], *, port: int,
                    what: str, service_name: str, **fields: str) -> None:
    """Run an app that needs the API keys (this service, aiart's API): an
    engine connection, the key cache refreshed in the background, uvicorn."""
    import aiodocker
    import uvicorn

    from aiart.auth.keystore import KeyStore
    from aiart.engine.adapter import DockerCluster

    logs.configure(LogSettings.from_env().level)
    settings = ServiceSettings.from_env()
    traced = tracing.configure(service_name)

    async def serve() -> None:
        async with aiodocker.Docker() as docker:
            cluster = DockerCluster(docker)
            keys = KeyCache(KeyStore(cluster).keys, settings.key_refresh_seconds)
            refresher = asyncio.create_task(keys.run())
            app = build(cluster, keys)
            if traced:
                app = tracing.TracingMiddleware(app, "aiart")
            # The auth service and the API take callers' credentials from
            # the gateway, which may run on another node: HTTPS only
            # (docs/security.md); neither file set: plain HTTP (tests).
            cert, key = settings.internal_tls()
            config = uvicorn.Config(app, host="0.0.0.0", port=port,
                                    log_config=None, access_log=False,
                                    ssl_certfile=cert, ssl_keyfile=key)
            log.info("%s started", what, extra={"fields": fields})
            try:
                await uvicorn.Server(config).serve()
            finally:
                refresher.cancel()

    asyncio.run(serve())
