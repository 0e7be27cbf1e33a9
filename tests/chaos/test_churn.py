"""Scenario 6: churn. Small models created and removed in bursts, some removed
while they are still being built. Pass: the swarm ends in exactly the
declared state (one Ready, answering service per declared model, none for a
removed one), and then in none at all once every model is removed. Measured:
the time to converge after the last change and the operator's peak memory."""

from __future__ import annotations

import random
import threading
import time

from tests.chaos.conftest import Cluster, knob, record, remove_model
from tests.e2e.conftest import Models, wait_for

CHURN = knob("AIART_CHAOS_CHURN", 20)
BURST = knob("AIART_CHAOS_CHURN_BURST", 10)
REPLICAS = knob("AIART_CHAOS_CHURN_REPLICAS", 1)


class MemoryPeak:
    """Samples the operator container's resident memory (the engine's cgroup
    figures, as ``docker stats`` shows them) once a second."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.peak_rss = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            try:
                node, container = self.cluster.wait_operator(timeout=10)
                with self.cluster.node_engine(node) as engine:
                    stats = engine.containers.get(container).stats(stream=False)
                memory = stats["memory_stats"]
                # cgroup v1 (the harness's nodes) names it total_rss, v2 anon.
                rss = memory["stats"].get("total_rss", memory["stats"].get("anon", 0))
                self.peak_rss = max(self.peak_rss, int(rss))
                self.samples += 1
            except Exception:  # a sample missed is no failure of the scenario
                continue

    def __enter__(self) -> MemoryPeak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def services_by_model(models: Models, prefix: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for service in models.engine.services.list(filters={"label": "aiart.managed-by=aiart"}):
        model = service.attrs["Spec"]["Labels"].get("aiart.model", "")
        if model.startswith(prefix):
            counts[model] = counts.get(model, 0) + 1
    return counts


def test_churn_of_small_models_ends_in_the_declared_state(
        cluster: Cluster, models: Models, iris_pickle: bytes) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    prefix = models.name("c")
    declared: set[str] = set()
    removed = 0
    started = time.monotonic()
    with MemoryPeak(cluster) as memory:
        for burst_start in range(0, CHURN, BURST):
            for i in range(burst_start, min(CHURN, burst_start + BURST)):
                model = f"{prefix}{i}"
                models.declare(model, "1", iris_pickle, replicas=str(REPLICAS))
                declared.add(model)
            time.sleep(rng.uniform(1, 5))  # some are mid-build when removed
            for model in rng.sample(sorted(declared), len(declared) // 3):
                remove_model(models, model)
                declared.discard(model)
                removed += 1
        last_change = time.monotonic()

        def converged() -> bool:
            if services_by_model(models, prefix) != dict.fromkeys(declared, 1):
                return False
            return all(models.labels(f"{m}-1").get("aiart.status") == "Ready" for m in declared)

        wait_for(converged, 600, f"{len(declared)} models Ready, nothing else (seed {seed})",
                 every=2)
        converge_seconds = time.monotonic() - last_change

        for model in sorted(declared):
            remove_model(models, model)
        removing = time.monotonic()
        wait_for(lambda: not services_by_model(models, prefix), 300,
                 "every churned model's service removed", every=1)
        removal_seconds = time.monotonic() - removing
    record("6 churn", created=CHURN, removed_during=removed, declared_at_end=len(declared),
           seed=seed, converge_seconds=round(converge_seconds, 1),
           remove_all_seconds=round(removal_seconds, 1),
           total_seconds=round(time.monotonic() - started, 1),
           operator_peak_rss_mib=round(memory.peak_rss / 2**20, 1),
           memory_samples=memory.samples)
    assert memory.samples > 0, "the operator's memory was never read"
