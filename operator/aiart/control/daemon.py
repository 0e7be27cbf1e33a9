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
from aiart_runtime import logs, tracing
from prometheus_client import start_http_server

from aiart import __version__
from aiart.auth.access import gateway_token
from aiart.auth.keystore import KeyStore, read_probe_key, revoke_operator_key
from aiart.build.image_builder import ImageBuilder
from aiart.catalog.backends import open_catalog
from aiart.control.alert_watch import AlertWatch
from aiart.control.autoscaler import Autoscaler
from aiart.control.deps import Deps
from aiart.control.gate import PrometheusGate
from aiart.control.loop import Operator
from aiart.control.metrics import OperatorMetrics
from aiart.control.prober import Gateway
from aiart.control.traffic_feed import TrafficFeed
from aiart.core.settings import LogSettings, OperatorSettings, StoreGatewaySettings
from aiart.engine.adapter import DockerCluster, RegistryAuth
from aiart.store.client import open_store

log = logging.getLogger("aiart.operator")


# The user of the passwords aiart's stack makes (hack/stack.sh).
USER = "aiart"


def monitoring_auth(settings: OperatorSettings) -> aiohttp.BasicAuth | None:
    """Alertmanager's credentials (the monitoring password's Docker secret),
    or None where none is configured."""
    if not settings.alertmanager_password_file:
        return None
    return aiohttp.BasicAuth(USER, Path(settings.alertmanager_password_file).read_text().strip())


def store_gateway_key(settings: StoreGatewaySettings) -> bytes | None:
    """The store gateway's key (its Docker secret), or None: then no model
    gets the store."""
    if not settings.key_file:
        return None
    return Path(settings.key_file).read_bytes().strip()


def registry_auth(settings: OperatorSettings) -> RegistryAuth | None:
    """The registry's credentials (its password's Docker secret), or None."""
    if not settings.registry_password_file:
        return None
    password = Path(settings.registry_password_file).read_text().strip()
    return RegistryAuth(settings.registry, USER, password)


async def serve(settings: OperatorSettings, stop: asyncio.Event) -> None:
    # A missing secret stops the start, named.
    alert_auth, registry = monitoring_auth(settings), registry_auth(settings)
    gateway_key = store_gateway_key(StoreGatewaySettings.from_env())
    docker = aiodocker.Docker()
    session = aiohttp.ClientSession()
    try:
        cluster = DockerCluster(docker, registry)
        await cluster.ensure_network(settings.network)
        store = open_store()
        metrics = OperatorMetrics()
        if settings.metrics_port:
            # A thread of prometheus_client's: scrapes never wait on the loop.
            start_http_server(settings.metrics_port, registry=metrics.registry)
        probe_key = read_probe_key()
        if settings.gateway_only and probe_key is None:
            log.warning("no probe key: model servers answer anyone on the model network, "
                        "not only the gateway (docs/security.md)")
        gate = PrometheusGate(settings.prometheus_url, session, auth=alert_auth) if (
            settings.prometheus_url) else None
        deps = Deps(
            cluster=cluster,
            builder=ImageBuilder(cluster, cache_dir=Path(settings.cache_dir),
                                 timeout=settings.build_timeout_seconds,
                                 builds=settings.builds),
            gateway=Gateway(settings.gateway_url, session, probe_key=probe_key,
                            host=settings.gateway_host),
            probe_key=probe_key,
            settings=settings,
            store=store,
            store_gateway_key=gateway_key,
            catalog=open_catalog(cluster),
            models=metrics.models,
            gate=gate,
        )
        # Earlier releases gave the operator an admin API key for its probes;
        # probe tokens replaced it, so no such key may stay valid.
        await revoke_operator_key(KeyStore(cluster))
        operator = Operator(deps, metrics=metrics)

        def token_of(model: str, version: str) -> str:
            return gateway_token(probe_key, model, version) if (
                probe_key and settings.gateway_only) else ""

        autoscaler = Autoscaler(
            cluster, PrometheusGate(settings.prometheus_url, session, auth=alert_auth)
            if settings.prometheus_url else None,
            kick=operator.queue.add, token_of=token_of, network=settings.network,
            interval=settings.scale_interval_seconds)
        feed_runner = None
        if settings.traffic_port:
            feed_runner = await TrafficFeed(cluster, settings, token_of, autoscaler).serve(
                settings.traffic_port)
        log.info("aiart operator %s started", __version__, extra={"fields": {
            "registry": settings.registry, "network": settings.network,
            "gateway": settings.gateway_url, "public_url": settings.public_url,
            "object_store": store.endpoint if store else "none",
            "catalog": type(deps.catalog).__name__,
            "metrics_port": settings.metrics_port,
            "alertmanager": settings.alertmanager_url or "none",
            "prometheus": settings.prometheus_url or "none",
            "traffic_port": settings.traffic_port}})
        runner = asyncio.create_task(operator.run())
        stopper = asyncio.create_task(stop.wait())
        helpers = [asyncio.create_task(autoscaler.run())]
        if settings.alertmanager_url:
            helpers.append(asyncio.create_task(AlertWatch(
                cluster, session, settings.alertmanager_url,
                interval=settings.alert_poll_seconds, metrics=metrics,
                auth=alert_auth).run()))
        done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in (runner, stopper, *helpers):
            task.cancel()
        if feed_runner is not None:
            await feed_runner.cleanup()
        if runner in done and runner.exception() is not None:
            raise runner.exception()  # type: ignore[misc]
    finally:
        await session.close()
        await docker.close()
        log.info("aiart operator stopped")


def main() -> None:
    logs.configure(LogSettings.from_env().level)
    settings = OperatorSettings.from_env()
    if tracing.configure("aiart-operator"):
        log.info("tracing reconcile steps over OTLP")

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
