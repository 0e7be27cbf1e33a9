"""``aiart-operator``: startup, main loop, shutdown.

The signal handler only sets a flag; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

import aiodocker
import aiohttp

from . import __version__, logs
from .backends import open_catalog, open_store
from .docker_adapter import DockerCluster
from .gateway import Gateway
from .image_builder import ImageBuilder
from .keystore import KeyStore, renew_operator_key
from .loop import Operator
from .reconcile import Deps
from .settings import Settings

log = logging.getLogger("aiart.operator")


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    docker = aiodocker.Docker()
    session = aiohttp.ClientSession()
    try:
        cluster = DockerCluster(docker)
        await cluster.ensure_network(settings.network)
        store = open_store()
        deps = Deps(
            cluster=cluster,
            builder=ImageBuilder(cluster, cache_dir=Path(settings.cache_dir),
                                 timeout=settings.build_timeout_seconds),
            gateway=Gateway(settings.gateway_url, session,
                            api_key=await renew_operator_key(KeyStore(cluster))),
            settings=settings,
            store=store,
            catalog=open_catalog(cluster),
        )
        operator = Operator(deps)
        log.info("aiart operator %s started", __version__, extra={"fields": {
            "registry": settings.registry, "network": settings.network,
            "gateway": settings.gateway_url, "public_url": settings.public_url,
            "object_store": store.endpoint if store else "none",
            "catalog": type(deps.catalog).__name__}})
        runner = asyncio.create_task(operator.run())
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        runner.cancel()
        stopper.cancel()
        if runner in done and runner.exception() is not None:
            raise runner.exception()  # type: ignore[misc]
    finally:
        await session.close()
        await docker.close()
        log.info("aiart operator stopped")


def main() -> None:
    logs.configure(os.environ.get("AIART_LOG_LEVEL", "INFO"))
    settings = Settings.from_env()

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal() -> None:
            if stop.is_set():
                os._exit(1)  # second signal: no more waiting
            log.info("stopping")
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal)
        await serve(settings, stop)

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
