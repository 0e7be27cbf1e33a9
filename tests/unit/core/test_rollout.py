"""Rollouts (operator/aiart/core/rollout.py, core/traffic.py): the manifest's
``spec.rollout``, each move of a canary and a shadow, and the routes the
gateway is served for a split."""

from __future__ import annotations

import pytest
from aiart.core.render import Guard
from aiart.core.rollout import (
    COMMAND,
    Figures,
    RolloutPhase,
    RolloutState,
    begin,
    canary_weight,
    command_of,
    decide,
    judge,
    read_state,
    state_labels,
)
from aiart.core.spec import ManifestError, Rollout, parse_manifest
from aiart.core.traffic import KEEPALIVE, ROLLOUT_PRIORITY, Split, dynamic_config

MANIFEST = """
apiVersion: aiart/v1
kind: Model
metadata: {name: iris, version: "2"}
spec:
  runtime: sklearn
  artifact: {uri: "config://iris-model-2"}
  rollout: %s
"""


def rollout(text: str) -> Rollout:
    spec = parse_manifest(MANIFEST % text).spec.rollout
    assert spec is not None
    return spec


CANARY = rollout("{strategy: canary, steps: [10, 50, 100], interval: 30s, "
                 "gate: {maxErrorRate: 0.05, maxP99Ms: 200, minRequests: 5}}")
GOOD = Figures(requests=100, errors=1, p99_ms=20.0)


def test_defaults_follow_flagger_and_mistakes_are_named() -> None:
    default = rollout("{strategy: canary}")
    assert default.step_weights == (10, 25, 50, 100) and default.interval_seconds == 60
    assert default.gate.maxErrorRate == 0.01 and default.gate.maxP99Ms == 500
    assert rollout("{strategy: shadow}").mirror_percent == 100
    for text, problem in (
            ("{strategy: canary, steps: [50, 20, 100]}", "must rise"),
            ("{strategy: canary, steps: [10, 50]}", "must end at 100"),
            ("{strategy: shadow, steps: [10, 100]}", "steps is for strategy canary"),
            ("{strategy: canary, percent: 5}", "percent is for strategy shadow"),
            ("{strategy: canary, interval: 1s}", "between 5s and 24h"),
            ("{strategy: canary, interval: soon}", "not a duration"),
            ("{strategy: blue}", "spec.rollout.strategy"),
            ("{strategy: canary, gate: {maxErrorRate: 2}}", "maxErrorRate")):
        with pytest.raises(ManifestError, match=problem):
            rollout(text)
    image = (MANIFEST % "{strategy: canary}").replace(
        "runtime: sklearn", "runtime: image\n  image: x:1").replace(
        '  artifact: {uri: "config://iris-model-2"}\n', "")
    with pytest.raises(ManifestError, match="a ready image exports none"):
        parse_manifest(image)


def test_state_round_trips_through_labels_and_commands_are_consumed() -> None:
    state = RolloutState(phase=RolloutPhase.PROGRESSING, stable="1", step=2, since=1700.25)
    labels = state_labels({"aiart.model": "iris", COMMAND: "promote"}, state)
    assert read_state(labels) == state and COMMAND not in labels
    assert labels["aiart.model"] == "iris"
    assert command_of({COMMAND: "abort"}) == "abort" and command_of({COMMAND: "rm"}) is None
    assert read_state({"aiart.rollout.phase": "Sideways"}) is None
    assert state_labels(labels, None) == {"aiart.model": "iris"}


def test_a_first_version_has_nothing_to_roll_out_from() -> None:
    assert begin(CANARY, None, 5.0).phase is RolloutPhase.PROMOTED
    assert begin(CANARY, "1", 5.0) == RolloutState(RolloutPhase.PROGRESSING, "1", 0, 5.0)
    assert begin(rollout("{strategy: shadow}"), "1", 5.0).phase is RolloutPhase.SHADOWING


def test_a_canary_steps_up_only_when_each_step_is_due_and_its_gate_passes() -> None:
    state = begin(CANARY, "1", 1000.0)
    assert canary_weight(CANARY, state) == 10
    early = decide(CANARY, state, now=1010.0, healthy=True, command=None, figures=None)
    assert early.state == state and early.requeue_after == pytest.approx(20.5)
    step2 = decide(CANARY, state, now=1030.0, healthy=True, command=None, figures=GOOD)
    assert step2.state.step == 1 and step2.state.since == 1030.0
    assert canary_weight(CANARY, step2.state) == 50
    step3 = decide(CANARY, step2.state, now=1061.0, healthy=True, command=None, figures=GOOD)
    assert canary_weight(CANARY, step3.state) == 100
    done = decide(CANARY, step3.state, now=1092.0, healthy=True, command=None, figures=GOOD)
    assert done.state.phase is RolloutPhase.PROMOTED and "after 3 steps" in done.state.reason


@pytest.mark.parametrize(("figures", "why"), [
    (Figures(requests=100, errors=6, p99_ms=20.0), "error rate 0.0600 > 0.05"),
    (Figures(requests=100, errors=0, p99_ms=250.0), "p99 250.0 ms > 200 ms"),
])
def test_a_failed_gate_rolls_back_with_the_figures(figures: Figures, why: str) -> None:
    state = begin(CANARY, "1", 1000.0)
    move = decide(CANARY, state, now=1031.0, healthy=True, command=None, figures=figures)
    assert move.state.phase is RolloutPhase.ABORTED
    assert why in move.state.reason and "step 1 of 3" in move.state.reason
    assert canary_weight(CANARY, move.state) == 0


def test_too_few_requests_or_no_prometheus_hold_the_step() -> None:
    state = begin(CANARY, "1", 1000.0)
    quiet = decide(CANARY, state, now=1031.0, healthy=True, command=None,
                   figures=Figures(requests=2, errors=2, p99_ms=900.0))
    assert quiet.state == state and "waiting for requests" in quiet.note
    away = decide(CANARY, state, now=1031.0, healthy=True, command=None,
                  figures="ClientConnectorError: prometheus:9090")
    assert away.state == state and "cannot read" in away.note and away.requeue_after == 5.0
    assert judge(CANARY.gate, Figures(requests=0, errors=0, p99_ms=None)).outcome == "hold"


def test_commands_and_an_unhealthy_version_end_the_rollout_at_once() -> None:
    state = begin(CANARY, "1", 1000.0)
    assert decide(CANARY, state, now=1001.0, healthy=True, command="promote",
                  figures=None).state.phase is RolloutPhase.PROMOTED
    assert decide(CANARY, state, now=1001.0, healthy=True, command="abort",
                  figures=None).state.phase is RolloutPhase.ABORTED
    gone = decide(CANARY, state, now=1001.0, healthy=False, command=None, figures=None)
    assert gone.state.phase is RolloutPhase.ABORTED and "stopped answering" in gone.state.reason
    shadow = rollout("{strategy: shadow, percent: 20}")
    mirrored = begin(shadow, "1", 1000.0)
    assert decide(shadow, mirrored, now=9999.0, healthy=True, command=None,
                  figures=None).state == mirrored  # a shadow moves only by hand


def test_the_gateway_is_served_a_weighted_split_behind_the_stable_guard() -> None:
    guard = Guard(auth_url="http://auth:8000", mode="apikey", rate_average=5)
    split = Split(model="iris", stable="1", new="2", mode="weighted", percent=25, guard=guard,
                  tokens=("t1", "t2"))
    http = dynamic_config([split], entrypoints=["websecure", "internal"])["http"]
    router = http["routers"]["aiart_iris_split_v2"]
    assert router["rule"] == "Path(`/v2/models/iris`) || PathPrefix(`/v2/models/iris/`)"
    assert router["priority"] == ROLLOUT_PRIORITY and router["entryPoints"] == [
        "websecure", "internal"]
    assert router["middlewares"] == ["aiart_iris_1_auth@swarm", "aiart_iris_1_ratelimit@swarm",
                                     "aiart_iris_split_nocred", "aiart_iris_1_retry@swarm"]
    assert http["routers"]["aiart_iris_split_base"]["middlewares"][-2] == "aiart_iris_split_strip"
    assert http["services"]["aiart_iris_split"] == {"weighted": {"services": [
        {"name": "aiart_iris_1@swarm", "weight": 75}, {"name": "aiart_iris_2@swarm", "weight": 25}]}}
    assert http["services"]["aiart_iris_split_grpc"]["weighted"]["services"][1]["name"] == (
        "aiart_iris_2_grpc@swarm")
    headers = http["middlewares"]["aiart_iris_split_nocred"]["headers"]["customRequestHeaders"]
    assert headers["X-Aiart-Gateway"] == "t1,t2" and headers["Authorization"] == ""


def test_a_shadow_is_a_mirror_and_no_split_still_says_something() -> None:
    split = Split(model="iris", stable="1", new="2", mode="mirror", percent=30,
                  guard=Guard(auth_url="x"), grpc=False)
    http = dynamic_config([split], entrypoints=["web"], host="models.example")["http"]
    assert http["services"]["aiart_iris_split"]["mirroring"]["mirrors"] == [
        {"name": "aiart_iris_2@swarm", "percent": 30}]
    assert http["routers"]["aiart_iris_split_v2"]["rule"].startswith("Host(`models.example`)")
    assert "aiart_iris_split_grpc" not in http["routers"]
    assert http["routers"]["aiart_iris_split_v2"]["middlewares"][0] == "aiart_iris_1_subject@swarm"
    # A weight of 100 leaves the stable version out rather than at weight 0.
    full = Split(model="iris", stable="1", new="2", mode="weighted", percent=100,
                 guard=Guard(auth_url="x"))
    assert dynamic_config([full], entrypoints=["web"])["http"]["services"]["aiart_iris_split"] == {
        "weighted": {"services": [{"name": "aiart_iris_2@swarm", "weight": 100}]}}
    # Traefik skips an empty configuration and keeps the last (never send one),
    # and refuses an empty section.
    assert dynamic_config([], entrypoints=["web"]) == {"http": {"middlewares": {KEEPALIVE: {
        "headers": {"customRequestHeaders": {"X-Aiart-Split": ""}}}}}}
