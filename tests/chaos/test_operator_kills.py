"""Scenario 1: the operator SIGKILLed at random moments while models are
built, deployed, updated and removed. Pass: the swarm ends in exactly the
declared state (one service per declared version, none for anything removed)
and every status tells the truth (a Ready version answers through the
gateway)."""

from __future__ import annotations

import random
import time

import httpx

from tests.chaos.conftest import IRIS_ROWS, Cluster, knob, record, remove_model
from tests.e2e.conftest import Models, wait_for

KILLS = knob("AIART_CHAOS_KILLS", 4)


def declared_state(models: Models, prefix: str) -> dict[str, set[str]]:
    """model -> versions, as the configs declare them."""
    state: dict[str, set[str]] = {}
    for config in models.engine.configs.list(filters={"label": "aiart.model"}):
        labels = config.attrs["Spec"]["Labels"]
        if labels["aiart.model"].startswith(prefix):
            state.setdefault(labels["aiart.model"], set()).add(
                config.name.removeprefix(labels["aiart.model"] + "-"))
    return state


def served_state(models: Models, prefix: str) -> dict[str, list[str]]:
    """model -> versions, one entry per service (so duplicates show)."""
    state: dict[str, list[str]] = {}
    for service in models.engine.services.list(filters={"label": "aiart.managed-by=aiart"}):
        labels = service.attrs["Spec"]["Labels"]
        if labels.get("aiart.model", "").startswith(prefix):
            state.setdefault(labels["aiart.model"], []).append(labels["aiart.version"])
    return state


def test_operator_killed_at_random_converges_to_the_declared_state(
        cluster: Cluster, models: Models, iris_pickle: bytes) -> None:
    rng = random.Random(int(time.time()))  # logged below, so a failure can be replayed
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    prefix = models.name("k")
    versions: dict[str, int] = {}  # model -> latest declared version
    actions: list[str] = []
    for i in range(KILLS):
        # Never remove the last model: a run that ends with nothing declared
        # would prove convergence to an empty swarm only.
        action = rng.choice(["create", "create", "update", "remove"] if len(versions) > 1
                            else ["create", "update"] if versions else ["create"])
        if action == "create":
            model = f"{prefix}{i}"
            models.declare(model, "1", iris_pickle)
            versions[model] = 1
        elif action == "update":
            model = rng.choice(sorted(versions))
            versions[model] += 1
            models.declare(model, str(versions[model]), iris_pickle)
        else:
            model = rng.choice(sorted(versions))
            remove_model(models, model)
            del versions[model]
        actions.append(f"{action} {model}")
        # A random moment: before the operator sees it, mid-build, mid-push,
        # mid-deploy or while it probes.
        time.sleep(rng.uniform(0, 6))
        victim = cluster.kill_operator()
        cluster.wait_operator(other_than=victim)

    last_change = time.monotonic()
    declared = declared_state(models, prefix)

    def converged() -> bool:
        served = served_state(models, prefix)
        if {m: sorted(v) for m, v in served.items()} != {m: sorted(v) for m, v in declared.items()}:
            return False
        return all(models.labels(f"{m}-{v}").get("aiart.status") == "Ready"
                   for m, vs in declared.items() for v in vs)

    wait_for(converged, 300, f"the declared state {declared} (seed {seed}, {actions})", every=1)
    converge_seconds = time.monotonic() - last_change
    # Each declared version answers at its versioned route: Ready is true.
    gateway = cluster.gateway()
    with httpx.Client(base_url=gateway, timeout=10) as http:
        for model, vs in declared.items():
            for version in vs:
                path = f"/v2/models/{model}/versions/{version}/infer"
                assert http.post(path, json=IRIS_ROWS).status_code == 200, path
    duplicates = {m: v for m, v in served_state(models, prefix).items() if len(v) != len(set(v))}
    assert not duplicates
    record("1 operator kills", iterations=KILLS, seed=seed, actions=len(actions),
           declared_versions=sum(len(v) for v in declared.values()),
           converge_seconds=round(converge_seconds, 1))
