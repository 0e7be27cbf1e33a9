"""How the programs that check API keys are run (the auth service and the
API): an engine connection, the key cache refreshed in the background,
uvicorn over HTTPS."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from aiart_runtime import logs, tracing

from aiart.auth.keystore import KeyCache

log = logging.getLogger("aiart.auth")


def internal_tls(env: Mapping[str, str] | None = None) -> tuple[str | None, str | None]:
    """The certificate and key files (uvicorn's) from AIART_INTERNAL_TLS_CERT_FILE and
    AIART_INTERNAL_TLS_KEY_FILE: the auth service and the API take callers'
    credentials from the gateway, which may run on another node, so they
    speak HTTPS only (docs/security.md). Neither set: plain HTTP (tests)."""
    env = os.environ if env is None else env
    cert = env.get("AIART_INTERNAL_TLS_CERT_FILE", "").strip()
    key = env.get("AIART_INTERNAL_TLS_KEY_FILE", "").strip()
    if bool(cert) != bool(key):
        raise SystemExit("AIART_INTERNAL_TLS_CERT_FILE and AIART_INTERNAL_TLS_KEY_FILE "
                         "go together")
    return (cert, key) if cert else (None, None)


def serve_with_keys(build: Callable[[Any, KeyCache], Any], *, port_variable: str,
                    what: str, service_name: str, **fields: str) -> None:
    """Run an app that needs the API keys (this service, aiart's API): an
    engine connection, the key cache refreshed in the background, uvicorn."""
    import aiodocker
    import uvicorn

    from aiart.auth.keystore import KeyStore
    from aiart.engine.adapter import DockerCluster

    logs.configure(os.environ.get("AIART_LOG_LEVEL", "INFO"))
    traced = tracing.configure(service_name)

    async def serve() -> None:
        async with aiodocker.Docker() as docker:
            cluster = DockerCluster(docker)
            keys = KeyCache(KeyStore(cluster).keys,
                            float(os.environ.get("AIART_AUTH_REFRESH_SECONDS", "1")))
            refresher = asyncio.create_task(keys.run())
            app = build(cluster, keys)
            if traced:
                app = tracing.TracingMiddleware(app, "aiart")
            cert, key = internal_tls()
            config = uvicorn.Config(app, host="0.0.0.0",
                                    port=int(os.environ.get(port_variable, "8000")),
                                    log_config=None, access_log=False,
                                    ssl_certfile=cert, ssl_keyfile=key)
            log.info("%s started", what, extra={"fields": fields})
            try:
                await uvicorn.Server(config).serve()
            finally:
                refresher.cancel()

    asyncio.run(serve())
