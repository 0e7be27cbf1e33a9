"""Each model's stream bridges (spec.streams; docs/streams.md): one service
per stream of the version that serves the model, and per stream binding (a
config labelled ``aiart.stream-binding=<model>`` holding one stream), with
an API key of its own, removed with its stream or its model.

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
from aiart.control.records import write_status
from aiart.core import labels as L
from aiart.core.errors import TransientError
from aiart.core.render import render_stream, stream_service_name
from aiart.core.spec import AuthMode, Manifest, ManifestError, Stream, parse_stream
from aiart.core.status import Phase, Status

log = logging.getLogger("aiart.control")


async def bound_streams(deps: Deps, model: str, manifest: Manifest | None) -> list[Stream]:
    """The streams of ``model``'s binding configs that can run beside
    ``manifest``'s own (None: the model serves no version); each binding's
    status says whether its stream runs, and why not."""
    taken = {s.name for s in (manifest.spec.streams if manifest else [])}
    streams = []
    configs = await deps.cluster.list_configs(f"{L.STREAM_BINDING}={model}")
    for config in sorted(configs, key=lambda c: (c.created_at, c.id)):
        try:
            stream = parse_stream(config.data)
        except ManifestError as exc:
            status = Status(phase=Phase.INVALID, message="; ".join(exc.problems))
        else:
            if manifest is None:
                status = Status(phase=Phase.PENDING,
                                message=f"model {model} serves no version (yet)")
            elif manifest.spec.auth.mode is AuthMode.OIDC:
                status = Status(phase=Phase.INVALID, message=(
                    f"model {model} takes OIDC tokens; a stream calls it with an API key of "
                    "its own: the model needs auth mode apikey or none"))
            elif stream.name in taken:
                status = Status(phase=Phase.INVALID, message=(
                    f"model {model} has a stream named {stream.name} already (its manifest's "
                    "or an older binding's): give this one another name"))
            else:
                taken.add(stream.name)
                streams.append(stream)
                status = Status(phase=Phase.READY, message=(
                    f"bridged by {stream_service_name(model, stream.name)}"))
        try:
            await write_status(deps.cluster, config, status)
        except TransientError as exc:  # written again at the next pass
            log.info("stream binding %s: %s", config.name, exc)
    return streams


async def reconcile_streams(deps: Deps, model: str, manifest: Manifest | None) -> str | None:
    """Make ``model``'s bridges those of ``manifest``'s streams and its
    bindings' (none: None, the model is gone). Returns why its streams
    cannot run here, if they cannot."""
    cluster, settings = deps.cluster, deps.settings
    wanted = {s.name: s for s in (manifest.spec.streams if manifest else [])}
    wanted.update((s.name, s) for s in await bound_streams(deps, model, manifest))
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
