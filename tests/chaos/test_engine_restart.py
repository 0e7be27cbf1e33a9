"""Scenario 4: the Docker daemon under the operator restarted (inside its
node of the harness), which breaks the operator's event stream and its
engine connection. While the engine is away a model is declared and another
removed. Pass: the operator runs again, resynchronises, and misses neither:
the new model becomes Ready, the removed one's service goes, and a model
served before is untouched."""

from __future__ import annotations

import time

from tests.chaos.conftest import (
    Cluster,
    Served,
    Spares,
    knob,
    record,
    remove_model,
    tolerant,
)
from tests.e2e.conftest import Models, wait_for

RESTARTS = knob("AIART_CHAOS_RESTARTS", 1)


def restart_round(cluster: Cluster, models: Models, iris_pickle: bytes, spares: Spares,
                  round_: int) -> None:
    gone, _ = spares.ready(f"gone{round_}")
    # Not the first manager's engine: the harness drives the swarm
    # through it, and the changes below land through it while the
    # operator's engine is away.
    node, container = cluster.operator_off_first()
    restarted_at = time.monotonic()
    cluster.stop_engine(node)
    try:
        # Declared while a manager is away, maybe the leader: the swarm
        # elects another first (ChaosModels writes through the election).
        new = models.name(f"new{round_}")
        new_config = models.declare(new, "1", iris_pickle)
        remove_model(models, gone)
    finally:
        cluster.start_engine(node)
    cluster.wait_operator(other_than=container, timeout=180)
    back_at = time.monotonic()
    wait_for(tolerant(lambda: models.labels(new_config).get("aiart.status") == "Ready"
                      and not models.services(gone)), 300,
             "the new model Ready and the removed one's service gone", every=1)
    settled_at = time.monotonic()
    record("4 engine restart", round=round_ + 1, node=node,
           operator_back_seconds=round(back_at - restarted_at, 1),
           changes_done_seconds=round(settled_at - restarted_at, 1))
    cluster.wait_nodes_ready()


def test_an_engine_restart_under_the_operator_misses_nothing(
        cluster: Cluster, models: Models, iris_pickle: bytes, spares: Spares,
        served: Served) -> None:
    for round_ in range(RESTARTS):
        restart_round(cluster, models, iris_pickle, spares, round_)
    served.check_untouched(cluster, models)
