"""Each model's stream bridges (spec.streams; docs/streams.md): one service
per stream of the version that serves the model, with an API key of its
own, removed with its stream or its model.

A bridge calls the model through the gateway like any caller, so that a
version switch, a rollout or a sleeping model is the gateway's business,
not the bridge's: which version's manifest names the streams is all this
module decides (the one the model's routes lead to, the newest of them
while two do).
"""

from __future__ import annotations

import hashlib
import logging

from aiart.auth.access import stream_key, stream_key_name
from aiart.auth.keystore import KEY_PREFIX, KeyStore
from aiart.control.deps import Deps
from aiart.core import labels as L
from aiart.core.render import render_stream
from aiart.core.spec import Manifest

log = logging.getLogger("aiart.control")


async def reconcile_streams(deps: Deps, model: str, manifest: Manifest | None) -> str | None:
    """Make ``model``'s bridges those of ``manifest``'s streams (none: None).
    Returns why its streams cannot run here, if they cannot."""
    cluster, settings = deps.cluster, deps.settings
    wanted = {s.name: s for s in (manifest.spec.streams if manifest else [])}
    existing = {s.labels.get(L.STREAM, ""): s for s in await cluster.list_stream_services(model)}
    keys = KeyStore(cluster)
    for name, service in existing.items():
        if name not in wanted:
            log.info("removing %s: its stream is gone", service.name)
            await cluster.remove_service(service)
            await keys.revoke(stream_key_name(model, name))
    if not wanted:
        return None
    if not settings.stream_image or deps.probe_key is None:
        return ("spec.streams: no stream bridge can run here (AIART_STREAM_IMAGE, and the "
                "probe key that bridges' own API keys come from)")
    broker = await cluster.secret_id(settings.broker_secret)
    if broker is None:
        return f"spec.streams: the broker's password secret {settings.broker_secret} is missing"
    known = {c.labels.get(L.API_KEY) for c in await cluster.list_configs(L.API_KEY)}
    for stream in wanted.values():
        text, record = stream_key(deps.probe_key, model, stream.name)
        if record.id not in known:
            await keys.add(record)
        secret_name = f"{KEY_PREFIX}stream-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
        secret = await cluster.ensure_secret(secret_name, text.encode(), {
            L.MANAGED_BY: L.MANAGED_BY_VALUE, L.MODEL: model})
        spec = render_stream(model=model, stream=stream, settings=settings,
                             key_secret=(secret, secret_name),
                             broker_secret=(broker, settings.broker_secret))
        live = existing.get(stream.name)
        if live is None:
            log.info("creating %s: stream %s of %s", spec["Name"], stream.name, model)
            await cluster.create_service(spec)
        elif live.labels.get(L.SPEC_HASH) != spec["Labels"][L.SPEC_HASH]:
            log.info("updating %s: stream %s of %s changed", spec["Name"], stream.name, model)
            await cluster.update_service(live, spec)
    return None
