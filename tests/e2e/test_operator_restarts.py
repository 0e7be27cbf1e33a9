"""The operator restarted or killed at any moment: the swarm converges to the
declared state, with no duplicate service and no restart of settled models."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from typing import Any

import docker
import httpx
import pytest

from tests.e2e.conftest import Models, running_task_ids, wait_for
from tests.e2e.test_rollouts import rollout_begins, serving_under_traffic

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
    # The low-level call: the high-level one reads the service back after
    # creating it, and a CI run saw the operator remove it in between (404).
    created = engine.api.create_service(
        docker.types.TaskTemplate(container_spec=docker.types.ContainerSpec(
            image, command=["sleep", "600"])),
        name=f"aiart-{model}-1",
        labels={"aiart.managed-by": "aiart", "aiart.model": model, "aiart.version": "1",
                "aiart.owner": "gone"},
    )
    assert created["ID"]
    wait_for(lambda: not models.services(model), 60, "the orphan to be removed")


def test_a_rollout_goes_on_at_the_same_step_after_the_operator_is_killed(
    models: Models, iris_pickle: bytes, operator_service: Any
) -> None:
    """The operator killed in the middle of a canary's step: the gateway keeps
    the split while it is away, and the new operator neither restarts the
    step nor skips it (the step's clock is in the config's labels)."""
    model = models.name("resume")
    hammer = serving_under_traffic(models, model, iris_pickle)
    try:
        v2 = rollout_begins(models, model, "2", iris_pickle,
                            "{strategy: canary, steps: [50, 100], interval: 20s, "
                            "gate: {minRequests: 5}}")
        since = float(models.labels(v2)["aiart.rollout.since"])
        time.sleep(max(0.0, since + 10 - time.time()))  # halfway through the step
        victim = operator_container_id(operator_service)
        assert victim is not None
        models.engine.containers.get(victim).kill()
        start = len(hammer.versions)
        wait_for(lambda: operator_container_id(operator_service) not in (None, victim), 120,
                 "a new operator task")
        time.sleep(2)
        while_away = hammer.versions[start:]
        assert abs(100 * Counter(while_away)["2"] / max(len(while_away), 1) - 50) <= 10, (
            Counter(while_away))
        labels = models.labels(v2)
        assert labels["aiart.rollout.step"] == "0" and float(
            labels["aiart.rollout.since"]) == since, labels
        wait_for(lambda: models.labels(v2).get("aiart.rollout.step") == "1", 90,
                 "the first step to pass")
        # Passed on its own clock: a step restarted by the new operator would
        # have begun again when it came back, at least 10 s later.
        assert float(models.labels(v2)["aiart.rollout.since"]) - since < 30
        wait_for(lambda: models.labels(v2).get("aiart.status.current") == "true", 120,
                 "version 2 to be promoted")
    finally:
        hammer.stop.set()
        hammer.join(15)
    assert hammer.failures == [], hammer.failures[:5]


def test_a_sleeping_model_is_woken_by_a_request_made_while_the_operator_is_away(
    models: Models, iris_pickle: bytes, operator_service: Any
) -> None:
    """The operator killed while a scalable model is at zero: a request
    that comes meanwhile is held by the activator (which asks the operator
    again and again), and answered once the new operator has woken it; the
    new operator puts it back to sleep on its own clock (its decisions are
    in the config's labels), and a gRPC call then wakes it too."""
    from tests.e2e.conftest import GATEWAY
    from tests.e2e.test_grpc import infer, triton
    from tests.e2e.test_model_lifecycle import ROWS, infer_body
    from tests.e2e.test_scaling import asleep

    model = models.name("sleeper")
    config = models.declare(model, "1", iris_pickle, scaling=(
        "{minReplicas: 0, maxReplicas: 2, stableWindow: 6s, panicWindow: 4s, "
        "scaleToZeroAfter: 5s, activationTimeout: 120s}"))
    models.wait_status(config, "Ready", timeout=300)
    wait_for(lambda: asleep(models, config, model), 90, f"{model} to go to zero")
    time.sleep(2)  # the gateway has no task of it left
    victim = operator_container_id(operator_service)
    assert victim is not None
    models.engine.containers.get(victim).kill()
    answer: dict[str, Any] = {}

    def call() -> None:
        with httpx.Client(base_url=GATEWAY, timeout=150) as client:
            answer["response"] = client.post(f"/v2/models/{model}/infer",
                                             json=infer_body(ROWS))

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    time.sleep(3)
    assert caller.is_alive(), answer  # held, not refused
    wait_for(lambda: operator_container_id(operator_service) not in (None, victim), 120,
             "a new operator task")
    caller.join(130)
    response = answer["response"]
    assert response.status_code == 200, response.text
    assert response.json()["outputs"][0]["data"] == [0, 2]
    # It sleeps again, decided by the new operator; a gRPC call (routed by
    # its metadata) is held and answered as well.
    wait_for(lambda: asleep(models, config, model), 90, f"{model} to go to zero again")
    time.sleep(2)  # the gateway has no task of it left
    (answer,) = triton([infer(model, **{"aiart-model": model})])
    assert answer.get("predict") == [0, 2], answer
