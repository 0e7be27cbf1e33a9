"""The operator's only door to the Docker Engine (through aiodocker).

It returns plain frozen records, so that the reconcile logic never sees a
raw API dictionary, and it maps every failure to ``TransientError`` (the
engine or registry is away) or ``PermanentError`` (the input is at fault).
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import tarfile
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Any

import aiodocker
import aiohttp
from aiodocker.utils import compose_auth_header

from aiart.core import labels as L
from aiart.core.errors import PermanentError, TransientError
from aiart.core.objects import ConfigObject, ServiceObject, TaskState, TaskSummary
from aiart.core.spec import image_repository

log = logging.getLogger("aiart.docker")
# How long a registry may take to say what a tag is (a registry that cannot
# be reached must not hold a reconcile pass up for long).
REGISTRY_TIMEOUT = 15.0


def _config(raw: Mapping[str, Any]) -> ConfigObject:
    spec = raw["Spec"]
    return ConfigObject(
        id=raw["ID"],
        name=spec["Name"],
        index=int(raw["Version"]["Index"]),
        created_at=raw.get("CreatedAt", ""),
        labels=dict(spec.get("Labels") or {}),
        data=base64.b64decode(spec.get("Data") or ""),
    )


def _service(raw: Mapping[str, Any]) -> ServiceObject:
    spec = raw["Spec"]
    return ServiceObject(
        id=raw["ID"],
        name=spec["Name"],
        index=int(raw["Version"]["Index"]),
        labels=dict(spec.get("Labels") or {}),
        spec=spec,
    )


def _timestamp(text: str) -> datetime:
    """The engine's RFC 3339 time with nanoseconds, to a datetime (microseconds)."""
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", text)
    if not match:
        return datetime.now(UTC)
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return datetime.fromisoformat(match.group(1) + fraction + zone)


def _filters(**kwargs: list[str]) -> dict[str, str]:
    return {"filters": json.dumps(kwargs)}


def tar_context(files: Mapping[str, bytes]) -> bytes:
    """A build context tarball; fixed owner, mode and time so equal input gives equal bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path, content in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(content)
            info.mode = 0o644
            info.mtime = 0
            tar.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# The builder's own progress lines ("Step 3/5 : RUN ...", " ---> 1a2b", ...):
# noise to a user reading why their model failed.
_BUILD_NOISE = re.compile(r"^(Step \d+/\d+ :|---> |Removing intermediate|Successfully )")
_FAILURE_CHARS = 600


def _build_failure(error: str, output: list[str]) -> str:
    """The words a user needs, short and in plain text: aiart's own diagnosis
    when the failing step gave one, else the step's last lines and the error."""
    lines = [_ANSI.sub("", line).strip() for line in output]
    ours = [line for line in lines if line.startswith("aiart:")]
    if ours:
        text = ours[-1].removeprefix("aiart: ")
    else:
        said = [line for line in lines if line and not _BUILD_NOISE.match(line)]
        text = " | ".join([*said[-3:], _ANSI.sub("", error).strip()])
    if len(text) > _FAILURE_CHARS:
        text = text[:_FAILURE_CHARS - 1] + "…"
    return f"image build failed: {text}"


class RegistryAuth:
    """aiart's registry and its credentials: pushes carry them, and so do
    services whose image is in it (the engine hands them to the nodes that
    pull). Never sent for an image of another registry."""

    def __init__(self, server: str, username: str, password: str) -> None:
        self.server = server
        self.credentials = {"username": username, "password": password}
        self.header = compose_auth_header(self.credentials, registry_addr=server)

    def owns(self, image: str) -> bool:
        return image.startswith(f"{self.server}/")

    def for_image(self, image: str) -> dict[str, str]:
        return {"X-Registry-Auth": self.header} if self.owns(image) else {}

    def for_build(self) -> dict[str, str]:
        """For an image build whose FROM is one of aiart's images that this
        engine may not have (pushed from another manager: a model's runtime,
        a batch job's model image after the operator moved)."""
        config = json.dumps({self.server: self.credentials}).encode()
        return {"X-Registry-Config": base64.urlsafe_b64encode(config).decode()}


class DockerCluster:
    def __init__(self, docker: aiodocker.Docker, registry: RegistryAuth | None = None) -> None:
        self.docker = docker
        self.registry = registry

    def _auth_for(self, spec: Mapping[str, Any]) -> dict[str, str]:
        image = str(spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image", ""))
        return self.registry.for_image(image) if self.registry else {}

    async def _json(self, path: str, method: str = "GET", **kwargs: Any) -> Any:
        try:
            return await self.docker._query_json(path, method, **kwargs)
        except aiodocker.DockerError as exc:
            if exc.status >= 500 or exc.status == 409:
                raise TransientError(f"Docker Engine: {exc.message}") from exc
            raise
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"Docker Engine unreachable: {exc}") from exc

    # -- configs ----------------------------------------------------------

    async def list_model_configs(self, model: str | None = None) -> list[ConfigObject]:
        label = f"{L.MODEL}={model}" if model else L.MODEL
        raw = await self._json("configs", params=_filters(label=[label]))
        return [_config(c) for c in raw]

    async def list_configs(self, label: str) -> list[ConfigObject]:
        raw = await self._json("configs", params=_filters(label=[label]))
        return [_config(c) for c in raw]

    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> None:
        await self._json("configs/create", "POST", data={
            "Name": name, "Labels": dict(labels), "Data": base64.b64encode(data).decode()})

    async def delete_config(self, config_id: str) -> bool:
        """Remove a config; False when it was already gone."""
        try:
            await self._json(f"configs/{config_id}", "DELETE")
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def secret_id(self, name: str) -> str | None:
        """The id of the Docker secret ``name``; None when there is none."""
        raw = await self._json("secrets", params=_filters(name=[name]))
        return next((s["ID"] for s in raw if s["Spec"]["Name"] == name), None)

    async def ensure_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        """The id of the secret ``name``, created with ``data`` if missing
        (names are content hashes: one that exists holds the same data). Two
        passes that create it at once: the second gets a 409, a transient
        error, and finds it the next time."""
        found = await self.secret_id(name)
        if found is not None:
            return found
        created = await self._json("secrets/create", "POST", data={
            "Name": name, "Labels": dict(labels), "Data": base64.b64encode(data).decode()})
        return str(created["ID"])

    async def remove_model_secrets(self, model: str) -> None:
        """Remove the secrets aiart made for a model. One still in use (by a
        service not yet gone) stays, said in the log; nothing else depends
        on its removal."""
        raw = await self._json("secrets", params=_filters(
            label=[f"{L.MODEL}={model}", f"{L.MANAGED_BY}={L.MANAGED_BY_VALUE}"]))
        for secret in raw:
            try:
                await self._json(f"secrets/{secret['ID']}", "DELETE")
            except (aiodocker.DockerError, TransientError) as exc:
                log.warning("cannot remove secret %s: %s", secret["Spec"]["Name"], exc)

    async def get_config(self, name: str) -> ConfigObject | None:
        try:
            raw = await self._json(f"configs/{name}")
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return None
            raise
        return _config(raw)

    async def update_config_labels(
        self, config: ConfigObject, labels: Mapping[str, str]
    ) -> ConfigObject | None:
        """Replace a config's labels; None when it changed or vanished meanwhile."""
        spec = {
            "Name": config.name,
            "Labels": dict(labels),
            "Data": base64.b64encode(config.data).decode(),
        }
        index = config.index
        try:
            await self.docker._query_json(
                f"configs/{config.id}/update", "POST", params={"version": str(index)}, data=spec
            )
        except aiodocker.DockerError as exc:
            # Another writer got there first, or the user removed the config:
            # the next reconcile reads the new truth.
            if exc.status in (404, 409) or "update out of sequence" in str(exc.message):
                return None
            if exc.status >= 500:
                raise TransientError(f"Docker Engine: {exc.message}") from exc
            raise
        except (aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"Docker Engine unreachable: {exc}") from exc
        return await self.get_config(config.id)

    # -- services ---------------------------------------------------------

    async def list_services(self, model: str | None = None) -> list[ServiceObject]:
        wanted = [f"{L.MANAGED_BY}={L.MANAGED_BY_VALUE}"]
        if model:
            wanted.append(f"{L.MODEL}={model}")
        raw = await self._json("services", params=_filters(label=wanted))
        # A stream's bridge and a batch job are no versions of a model: they
        # have lists of their own.
        return [_service(s) for s in raw
                if not {L.STREAM_OF, L.JOB} & set(s["Spec"].get("Labels") or {})]

    async def list_job_services(self) -> list[ServiceObject]:
        """Every batch job's service."""
        raw = await self._json("services", params=_filters(
            label=[f"{L.MANAGED_BY}={L.MANAGED_BY_VALUE}", L.JOB]))
        return [_service(s) for s in raw]

    async def list_stream_services(self, model: str | None = None) -> list[ServiceObject]:
        """The bridges of ``model``'s streams (of every model's: None)."""
        wanted = [f"{L.MANAGED_BY}={L.MANAGED_BY_VALUE}",
                  f"{L.STREAM_OF}={model}" if model else L.STREAM_OF]
        raw = await self._json("services", params=_filters(label=wanted))
        return [_service(s) for s in raw]

    async def create_service(self, spec: Mapping[str, Any]) -> None:
        try:
            await self._json("services/create", "POST", data=dict(spec),
                             headers=self._auth_for(spec))
        except aiodocker.DockerError as exc:
            raise PermanentError(f"Swarm refused the service: {exc.message}") from exc
        except TransientError:
            # A name conflict (409): "aiart-a-b-c" is both model a-b version c
            # and model a version b-c. The first one keeps it; the other is
            # told, instead of retrying for ever.
            name = str(spec["Name"])
            raw = await self._json("services", params=_filters(name=[name]))
            for other in (_service(s) for s in raw):
                labels = spec.get("Labels") or {}
                mine = (labels.get(L.MODEL), labels.get(L.VERSION))
                theirs = (other.labels.get(L.MODEL), other.labels.get(L.VERSION))
                if other.name == name and theirs != mine:
                    owner = (f"model {theirs[0]} version {theirs[1]}" if theirs[0]
                             else "a service aiart does not manage")
                    raise PermanentError(
                        f"the service name {name} is taken by {owner}; give this "
                        "model another name or version") from None
            raise

    async def update_service(self, service: ServiceObject, spec: Mapping[str, Any]) -> None:
        try:
            await self._json(
                f"services/{service.id}/update", "POST",
                params={"version": str(service.index)}, data=dict(spec),
                headers=self._auth_for(spec),
            )
        except aiodocker.DockerError as exc:
            if "out of sequence" in str(exc.message):
                raise TransientError("service changed while being updated") from exc
            raise PermanentError(f"Swarm refused the update: {exc.message}") from exc

    async def remove_service(self, service: ServiceObject) -> None:
        try:
            await self._json(f"services/{service.id}", "DELETE")
        except aiodocker.DockerError as exc:
            if exc.status != 404:
                raise

    async def task_summary(self, service: ServiceObject) -> TaskSummary:
        tasks = await self._json("tasks", params=_filters(service=[service.id]))
        image = service.spec["TaskTemplate"]["ContainerSpec"]["Image"]
        current = [t for t in tasks if t["Spec"]["ContainerSpec"]["Image"] == image]
        alive = [t for t in current if t["Status"]["State"] == "running"
                 and t.get("DesiredState") == "running"]
        running = len(alive)
        now = datetime.now(UTC)
        running_for = max((now - _timestamp(t["Status"].get("Timestamp", ""))).total_seconds()
                          for t in alive) if alive else 0.0
        starting = sum(1 for t in current if t["Status"]["State"] == "starting"
                       and t.get("DesiredState") == "running")
        failed = [t for t in current if t["Status"]["State"] in ("failed", "rejected")]
        failed.sort(key=lambda t: t["Status"].get("Timestamp", ""))
        last_error = ""
        if failed:
            status = failed[-1]["Status"]
            last_error = status.get("Err") or status.get("Message") or ""
        desired = int(service.spec.get("Mode", {}).get("Replicated", {}).get("Replicas", 1))
        return TaskSummary(desired=desired, running=running, failed=len(failed),
                           last_error=last_error, running_for=max(0.0, running_for),
                           starting=starting)

    async def task_states(self, service: ServiceObject) -> list[TaskState]:
        """A service's tasks, oldest first."""
        tasks = await self._json("tasks", params=_filters(service=[service.id]))
        tasks.sort(key=lambda t: t.get("CreatedAt", ""))
        return [TaskState(
            state=str(t["Status"]["State"]),
            exit_code=(t["Status"].get("ContainerStatus") or {}).get("ExitCode"),
            message=str(t["Status"].get("Err") or t["Status"].get("Message") or ""))
            for t in tasks]

    async def task_addresses(self, service: ServiceObject, network: str) -> list[str]:
        """The addresses on ``network`` of the service's tasks meant to run.
        The swarm allocates them when it creates a task, before its container
        starts; Docker's DNS answers for a task seconds after it runs."""
        tasks = await self._json("tasks", params=_filters(
            service=[service.id], **{"desired-state": ["running"]}))
        out = []
        for task in tasks:
            for attachment in task.get("NetworksAttachments") or []:
                if attachment.get("Network", {}).get("Spec", {}).get("Name") == network:
                    out += [a.split("/", 1)[0] for a in attachment.get("Addresses") or []]
        return sorted(out)

    async def service_logs(self, service_id: str, lines: int = 100) -> str:
        """The last ``lines`` of a service's logs (stdout and stderr)."""
        try:
            async with self.docker._query(
                f"services/{service_id}/logs",
                params={"stdout": "1", "stderr": "1", "tail": str(lines)},
            ) as response:
                raw = await response.read()
        except (aiodocker.DockerError, aiohttp.ClientError, OSError):
            return ""
        # Multiplexed stream: 8-byte frame headers before each chunk.
        out, pos = [], 0
        while pos + 8 <= len(raw):
            size = int.from_bytes(raw[pos + 4 : pos + 8], "big")
            out.append(raw[pos + 8 : pos + 8 + size])
            pos += 8 + size
        return b"".join(out).decode(errors="replace")

    async def service_log_tail(self, service: ServiceObject, lines: int = 5) -> str:
        return (await self.service_logs(service.id, lines)).strip()[-600:]

    async def ensure_network(self, name: str) -> None:
        networks = await self._json("networks", params=_filters(name=[name]))
        if any(n["Name"] == name for n in networks):
            return
        try:
            await self._json("networks/create", "POST", data={
                "Name": name, "Driver": "overlay", "Attachable": True,
                "Labels": {L.MANAGED_BY: L.MANAGED_BY_VALUE},
            })
        except aiodocker.DockerError as exc:
            if exc.status != 409:
                raise TransientError(f"cannot create network {name}: {exc.message}") from exc

    # -- images -----------------------------------------------------------

    async def image_exists(self, tag: str) -> bool:
        try:
            await self._json(f"images/{tag}/json")
        except aiodocker.DockerError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    async def image_digest(self, tag: str) -> str:
        """The registry digest of a pushed image (repo@sha256:...), else its local id."""
        try:
            raw = await self._json(f"images/{tag}/json")
        except aiodocker.DockerError:
            return ""
        repo = image_repository(tag)
        digests = [d for d in raw.get("RepoDigests") or [] if d.startswith(f"{repo}@")]
        return str(digests[0] if digests else raw.get("Id", ""))

    async def registry_digest(self, image: str) -> str:
        """What the image's registry says its reference is now, by digest
        (repo@sha256:...), as ``docker service create`` resolves an image;
        empty when no registry answers (an image built on this node only)."""
        try:
            raw = await self._json(f"distribution/{image}/json",
                                   headers=self.registry.for_image(image) if self.registry else {},
                                   timeout=REGISTRY_TIMEOUT)
        except (aiodocker.DockerError, TransientError) as exc:
            log.info("no registry digest for %s: %s", image, exc)
            return ""
        digest = str((raw.get("Descriptor") or {}).get("digest", ""))
        return f"{image_repository(image)}@{digest}" if digest.startswith("sha256:") else ""

    async def build_image(
        self, *, context: bytes, tag: str, labels: Mapping[str, str],
        timeout: float, network: bool = True,  # noqa: ASYNC109
    ) -> None:
        """Build from a tar context; PermanentError carries the failing step's output.

        ``network=False`` gives the build's steps no network at all (a model
        image's check loads the user's pickle or code)."""
        tail: list[str] = []
        params = {"t": tag, "rm": "1", "forcerm": "1", "labels": json.dumps(dict(labels))}
        if not network:
            params["networkmode"] = "none"
        try:
            # aiodocker's images.build has no network setting: the same call, by hand.
            response = self.docker._query(
                "build", "POST", params=params, data=context,
                headers={"content-type": "application/x-tar",
                         **(self.registry.for_build() if self.registry else {})},
                timeout=aiohttp.ClientTimeout(total=timeout))
            stream = self.docker.images._handle_response(  # type: ignore[no-untyped-call]
                response, True)
            async for chunk in stream:
                if "error" in chunk:
                    raise PermanentError(_build_failure(str(chunk["error"]), tail))
                text = (chunk.get("stream") or "").strip()
                if text:
                    tail.append(text)
        except aiodocker.DockerError as exc:
            if exc.status >= 500 and not tail:
                raise TransientError(f"image build interrupted: {exc.message}") from exc
            raise PermanentError(_build_failure(str(exc.message), tail)) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"image build interrupted: {exc}") from exc

    async def push_image(self, tag: str) -> None:
        repo, _, version = tag.rpartition(":")
        try:
            auth = self.registry.credentials if self.registry and self.registry.owns(tag) else None
            async for chunk in self.docker.images.push(repo, tag=version, stream=True, auth=auth):
                if "error" in chunk:
                    raise TransientError(f"push to the registry failed: {chunk['error']}")
        except aiodocker.DockerError as exc:
            raise TransientError(f"push to the registry failed: {exc.message}") from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise TransientError(f"push to the registry failed: {exc}") from exc

    # -- events -----------------------------------------------------------

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        """Config, service and node events until the stream ends (the caller
        reconnects). A node going down or coming back concerns no model by
        name, so it makes the loop look at every model: that is how a lost
        node's replicas show in the status within a pass, not a resync."""
        params = _filters(type=["config", "service", "node"])
        async with self.docker._query("events", params=params, timeout=None) as response:
            async for line in response.content:
                if line.strip():
                    yield json.loads(line)
