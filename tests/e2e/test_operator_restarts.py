"""The operator restarted or killed at any moment: the swarm converges to the
declared state, with no duplicate service and no restart of settled models."""

from __future__ import annotations

import os
import time
from typing import Any

import docker
import pytest

from tests.e2e.conftest import Models, running_task_ids, wait_for

# Restarts and kills the operator: alone, never beside other tests.
pytestmark = [pytest.mark.e2e, pytest.mark.serial]


def operator_container_id(service: Any) -> str | None:
    service.reload()
    for task in service.tasks(filters={"desired-state": "running"}):
        if task["Status"]["State"] == "running":
            return str(task["Status"]["ContainerStatus"]["ContainerID"])
    return None


def test_restart_touches_no_settled_model_and_kill_mid_build_converges(
    models: Models, iris_pickle: bytes, operator_service: Any
) -> None:
    settled = models.name("settled")
    config = models.declare(settled, "1", iris_pickle)
    models.wait_status(config, "Ready", timeout=300)
    (service,) = models.services(settled)
    index, tasks = service.attrs["Version"]["Index"], running_task_ids(service)

    # A new operator (as an upgrade of aiart would start) re-reads everything.
    before = operator_container_id(operator_service)
    operator_service.force_update()
    wait_for(lambda: operator_container_id(operator_service) not in (None, before), 120,
             "a new operator task")
    # Let it finish its first full pass over every model.
    time.sleep(8)

    # Kill it again while it is building another model.
    busy = models.name("busy")
    busy_config = models.declare(busy, "1", iris_pickle)
    wait_for(lambda: models.labels(busy_config).get("aiart.status") in ("Building", "Deploying"),
             60, "the build to start")
    victim = operator_container_id(operator_service)
    assert victim is not None
    models.engine.containers.get(victim).kill()
    models.wait_status(busy_config, "Ready", timeout=300)
    assert len(models.services(busy)) == 1, "a killed operator must not leave duplicates"

    service.reload()
    assert service.attrs["Version"]["Index"] == index, "the settled model's service changed"
    assert running_task_ids(service) == tasks, "the settled model's tasks were restarted"
    assert models.labels(config)["aiart.status"] == "Ready"


def test_a_managed_service_without_config_is_removed(models: Models,
                                                     engine: docker.DockerClient) -> None:
    model = models.name("orphan")
    image = os.environ.get("AIART_BASE_IMAGE", "")
    assert image, "AIART_BASE_IMAGE is set by ./hack/test.sh"
    engine.services.create(
        image, ["sleep", "600"], name=f"aiart-{model}-1",
        labels={"aiart.managed-by": "aiart", "aiart.model": model, "aiart.version": "1",
                "aiart.owner": "gone"},
    )
    wait_for(lambda: not models.services(model), 60, "the orphan to be removed")
