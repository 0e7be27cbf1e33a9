"""In-memory stand-ins for the engine, the builder and the gateway.

They let the reconcile loop's logic be tested fast and exhaustively; the
claim that aiart works rests on the end-to-end tests against real ones.
"""

from __future__ import annotations

import itertools
import json
import pickle
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from aiart.build.recipes import BatchRecipe, ModelRecipe, RuntimeRecipe
from aiart.core import labels as L
from aiart.core.errors import ObjectMissing, PermanentError, StoreUnavailable, TransientError
from aiart.core.objects import ConfigObject, ServiceObject, TaskState, TaskSummary
from aiart.core.render import carries_current_route
from sklearn.linear_model import LogisticRegression

_clock = itertools.count(1)


def tiny_model() -> bytes:
    x = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
    return pickle.dumps(LogisticRegression().fit(x, [0, 1, 0, 1]))


def manifest_yaml(name: str, version: str, artifact: str, runtime: str = "sklearn",
                  **extra: str) -> bytes:
    lines = [
        "apiVersion: aiart/v1", "kind: Model", f"metadata: {{name: {name}, version: '{version}'}}",
        "spec:", f"  runtime: {runtime}", f"  artifact: {{uri: 'config://{artifact}'}}",
        *(f"  {k}: {v}" for k, v in extra.items()),
    ]
    return ("\n".join(lines) + "\n").encode()


class FakeCluster:
    def __init__(self) -> None:
        self.configs: dict[str, ConfigObject] = {}
        self.services: dict[str, ServiceObject] = {}
        self.calls: list[str] = []
        self.failing_services: set[str] = set()
        # Services whose tasks have not started yet (the gateway may still
        # reach a task of a service they replaced): their image still being
        # pulled, or (started_services) their container started and its
        # first health check not passed yet.
        self.starting_services: set[str] = set()
        self.started_services: set[str] = set()
        self.running_for = 60.0
        self.secrets: dict[str, str] = {}  # name -> id
        self.secret_data: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.registry_digests: dict[str, str] = {}  # ready image -> repo@sha256:...
        self.tasks: dict[str, list[TaskState]] = {}  # a job's service name -> its tasks

    # -- test helpers ---------------------------------------------------
    def add_config(self, name: str, data: bytes, labels: Mapping[str, str] | None = None) -> str:
        cid = f"cfg{next(_clock):04d}"
        self.configs[cid] = ConfigObject(
            id=cid, name=name, index=1, created_at=f"2026-01-01T00:00:{next(_clock):06d}Z",
            labels=dict(labels or {}), data=data)
        return cid

    def remove_config(self, name: str) -> None:
        for cid, c in list(self.configs.items()):
            if c.name == name:
                del self.configs[cid]

    def config(self, name: str) -> ConfigObject:
        return next(c for c in self.configs.values() if c.name == name)

    def status(self, name: str) -> str | None:
        return self.config(name).labels.get(L.STATUS)

    # -- Cluster --------------------------------------------------------
    async def list_model_configs(self, model: str | None = None) -> list[ConfigObject]:
        return [c for c in self.configs.values() if L.MODEL in c.labels
                and (model is None or c.labels[L.MODEL] == model)]

    async def get_config(self, name: str) -> ConfigObject | None:
        return next((c for c in self.configs.values() if name in (c.name, c.id)), None)

    async def update_config_labels(
        self, config: ConfigObject, labels: Mapping[str, str]
    ) -> ConfigObject | None:
        live = self.configs.get(config.id)
        if live is None or live.index != config.index:
            return None
        self.calls.append(f"label {config.name} {labels.get(L.STATUS)}")
        self.configs[config.id] = replace(live, labels=dict(labels), index=live.index + 1)
        return self.configs[config.id]

    async def list_services(self, model: str | None = None) -> list[ServiceObject]:
        return [s for s in self.services.values()
                if L.STREAM_OF not in s.labels and L.JOB not in s.labels
                and (model is None or s.labels.get(L.MODEL) == model)]

    async def list_job_services(self) -> list[ServiceObject]:
        return [s for s in self.services.values() if L.JOB in s.labels]

    async def task_states(self, service: ServiceObject) -> list[TaskState]:
        return list(self.tasks.get(service.name, [TaskState("running", None, "")]))

    async def list_stream_services(self, model: str | None = None) -> list[ServiceObject]:
        return [s for s in self.services.values() if L.STREAM_OF in s.labels
                and (model is None or s.labels[L.STREAM_OF] == model)]

    async def create_service(self, spec: Mapping[str, Any]) -> None:
        for other in self.services.values():
            if other.name == spec["Name"]:
                # As the adapter reports Swarm's name conflict.
                raise PermanentError(
                    f"the service name {other.name} is taken by model "
                    f"{other.labels.get(L.MODEL)} version {other.labels.get(L.VERSION)}")
        sid = f"svc{next(_clock):04d}"
        self.calls.append(f"create {spec['Name']}")
        self.services[sid] = ServiceObject(id=sid, name=spec["Name"], index=1,
                                           labels=dict(spec["Labels"]), spec=dict(spec))

    async def update_service(self, service: ServiceObject, spec: Mapping[str, Any]) -> None:
        self.calls.append(f"update {spec['Name']}")
        self.services[service.id] = replace(service, labels=dict(spec["Labels"]),
                                            spec=dict(spec), index=service.index + 1)

    async def remove_service(self, service: ServiceObject) -> None:
        self.calls.append(f"remove {service.name}")
        self.services.pop(service.id, None)

    async def task_summary(self, service: ServiceObject) -> TaskSummary:
        desired = service.spec["Mode"]["Replicated"]["Replicas"]
        if service.name in self.failing_services:
            return TaskSummary(desired=desired, running=0, failed=5, last_error="exit code 1")
        if service.name in self.starting_services:
            return TaskSummary(desired=desired, running=0, failed=0, last_error="")
        if service.name in self.started_services:
            return TaskSummary(desired=desired, running=0, failed=0, last_error="",
                               starting=desired)
        return TaskSummary(desired=desired, running=desired, failed=0, last_error="",
                           running_for=self.running_for)

    async def task_addresses(self, service: ServiceObject, network: str) -> list[str]:
        replicas = int(service.spec["Mode"]["Replicated"]["Replicas"])
        return [f"10.0.9.{index + 2}" for index in range(replicas)]

    async def service_log_tail(self, service: ServiceObject, lines: int = 5) -> str:
        return "Traceback: boom"

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        if False:  # pragma: no cover - an empty async generator
            yield {}

    async def image_digest(self, tag: str) -> str:
        # What the engine knows locally: images aiart built and pushed to its
        # registry; others only as the (fake) registry last gave them.
        if tag.startswith("localhost:5000/"):
            return f"{tag.rpartition(':')[0]}@sha256:{'0' * 64}"
        return self.registry_digests.get(tag, "")

    async def registry_digest(self, image: str) -> str:
        # What a registry would answer for a ready image: it moves when the
        # test says so (a push to the tag).
        return self.registry_digests.get(image, "")

    async def delete_config(self, config_id: str) -> bool:
        return self.configs.pop(config_id, None) is not None

    async def service_logs(self, service_id: str, lines: int = 100) -> str:
        return "\n".join(f"line {i}" for i in range(lines))

    async def secret_id(self, name: str) -> str | None:
        return self.secrets.get(name)

    async def ensure_secret(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        if name not in self.secrets:
            self.secrets[name] = f"secret-{len(self.secrets)}"
            self.secret_data[name] = (data, dict(labels))
        return self.secrets[name]

    async def remove_model_secrets(self, model: str) -> None:
        for name, (_, labels) in list(self.secret_data.items()):
            if labels.get(L.MODEL) == model:
                del self.secrets[name], self.secret_data[name]

    async def list_configs(self, label: str) -> list[ConfigObject]:
        key, _, value = label.partition("=")
        return [c for c in self.configs.values()
                if key in c.labels and (not value or c.labels[key] == value)]

    async def create_config(self, name: str, data: bytes, labels: Mapping[str, str]) -> None:
        if any(c.name == name for c in self.configs.values()):
            raise TransientError(f"config {name} exists")
        self.add_config(name, data, labels)


class FakeStore:
    """An object store in memory; ``down`` makes every call fail as an
    unreachable store does."""

    endpoint = "store.test:9000"

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], tuple[bytes, dict[str, str]]] = {}
        self.buckets: set[str] = set()
        self.down = False
        self.calls = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise StoreUnavailable(f"the object store at {self.endpoint} is unreachable")

    async def ensure_bucket(self, bucket: str) -> bool:
        self._check()
        created = bucket not in self.buckets
        self.buckets.add(bucket)
        return created

    async def stat(self, bucket: str, key: str) -> tuple[str, int, dict[str, str]] | None:
        self._check()
        found = self.objects.get((bucket, key))
        return None if found is None else (str(hash(found[0])), len(found[0]), found[1])

    async def get(self, bucket: str, key: str) -> bytes:
        self._check()
        if (bucket, key) not in self.objects:
            raise ObjectMissing(f"s3://{bucket}/{key} does not exist")
        return self.objects[bucket, key][0]

    async def put(self, bucket: str, key: str, data: bytes, *,
                  content_type: str = "application/octet-stream",
                  metadata: Mapping[str, str] | None = None) -> None:
        self._check()
        if bucket not in self.buckets:
            raise ObjectMissing(f"bucket {bucket} does not exist")
        self.objects[bucket, key] = (data, dict(metadata or {}))

    async def list(self, bucket: str, prefix: str = "") -> list[str]:
        self._check()
        return sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix))

    async def remove_bucket(self, bucket: str) -> None:
        self._check()
        self.buckets.discard(bucket)
        for key in [k for k in self.objects if k[0] == bucket]:
            del self.objects[key]


class FakeBuilder:
    def __init__(self) -> None:
        self.built: list[str] = []
        self.runtimes: list[str] = []
        self.pushed: list[str] = []
        self.fail_with: Exception | None = None

    async def ensure_runtime(self, recipe: RuntimeRecipe) -> str:
        if self.fail_with:
            raise self.fail_with
        self.runtimes.append(recipe.tag)
        return recipe.tag

    async def ensure_model_image(self, recipe: ModelRecipe, *, push: bool = True) -> str:
        if self.fail_with:
            raise self.fail_with
        self.built.append(recipe.tag)
        return recipe.tag

    async def push_image(self, tag: str) -> None:
        if self.fail_with:
            raise self.fail_with
        self.pushed.append(tag)

    async def ensure_batch_image(self, recipe: BatchRecipe) -> str:
        if self.fail_with:
            raise self.fail_with
        self.built.append(recipe.tag)
        return recipe.tag


class FakeGateway:
    """Routes as Traefik would: a running service answers its versioned route;
    the unversioned route goes to the highest-priority service carrying it.
    Services whose image is in ``broken_images`` answer 404 everywhere;
    versions in ``unrouted`` (name, version) run but are not routed yet."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.down = False
        self.broken_images: set[str] = set()
        self.unrouted: set[tuple[str, str]] = set()

    async def contract_problems(self, name: str, version: str, *,
                                settled: bool = True) -> list[str] | None:
        for s in self.cluster.services.values():
            if s.labels.get(L.MODEL) == name and s.labels.get(L.VERSION) == version:
                image = s.spec["TaskTemplate"]["ContainerSpec"]["Image"]
                return ["GET /v2/health/live answered 404"] if image in self.broken_images else []
        return None

    def _answering(self, s: ServiceObject) -> bool:
        image = s.spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image")
        return (not self.down and s.name not in self.cluster.failing_services
                and image not in self.broken_images
                and s.spec["Mode"]["Replicated"]["Replicas"] > 0)

    async def version_ready(self, name: str, version: str) -> bool:
        return (name, version) not in self.unrouted and any(s.labels.get(L.MODEL) == name and s.labels.get(L.VERSION) == version
                   and self._answering(s) for s in self.cluster.services.values())

    async def current_version(self, name: str, versions: Sequence[str]) -> str | None:
        routed = [s for s in self.cluster.services.values() if s.labels.get(L.MODEL) == name
                  and carries_current_route(dict(s.labels)) and self._answering(s)]
        if not routed:
            return None

        def priority(s: ServiceObject) -> int:
            return int(next(v for k, v in s.labels.items() if k.endswith("_current_v2.priority")))

        return max(routed, key=priority).labels[L.VERSION]


def iris_model_dir(path: Path) -> Path:
    """A model directory the model server loads: iris, logistic regression."""
    from sklearn.datasets import load_iris
    x, y = load_iris(return_X_y=True)
    (path / "model.pkl").write_bytes(pickle.dumps(LogisticRegression(max_iter=500).fit(x, y)))
    (path / "model.json").write_text(json.dumps({
        "name": "iris", "version": "1", "runtime": "sklearn", "artifact": "model.pkl",
        "inputs": None, "outputs": None}))
    return path
