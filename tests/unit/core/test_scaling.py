"""The autoscaler's decisions (core/scaling.py) and spec.scaling's checks."""

from __future__ import annotations

import pytest
from aiart.core import labels as L
from aiart.core.scaling import (
    WAKE_HOLD_SECONDS,
    Load,
    Move,
    ScaleState,
    decide,
    first_state,
    read_state,
    state_labels,
    wanted_replicas,
    without_scale,
    worth_writing,
)
from aiart.core.spec import ManifestError, Scaling, parse_manifest

SCALING = Scaling(minReplicas=0, maxReplicas=8, target=2, stableWindow="60s",
                  panicWindow="6s", scaleToZeroAfter="30s")
T0 = 1_000_000.0


def test_a_burst_scales_up_at_once_and_nothing_is_given_back_during_it() -> None:
    state = ScaleState(replicas=1, changed=T0 - 600)
    # 16 in flight over the panic window, the stable window still calm.
    burst = decide(SCALING, state, Load(stable=1.5, panic=16, recent=100), ready=1, now=T0)
    assert burst.state.replicas == 8 and burst.state.panic_since == T0
    assert burst.reason.startswith("burst: 16.0 requests in flight over 6s")
    # A dip 20 s later: still within the stable window of the burst.
    dip = decide(SCALING, burst.state, Load(stable=3, panic=0, recent=100), ready=8,
                 now=T0 + 20)
    assert dip.state.replicas == 8 and dip.state.panic_since == T0
    # A stable window after the burst, the load gone: down by half at a time.
    calm = decide(SCALING, dip.state, Load(stable=0.5, panic=0, recent=10), ready=8,
                  now=T0 + 61)
    assert calm.state.panic_since is None and calm.state.replicas == 4
    calmer = decide(SCALING, calm.state, Load(stable=0.5, panic=0, recent=10), ready=4,
                    now=T0 + 63)
    assert calmer.state.replicas == 2
    assert decide(SCALING, calmer.state, Load(stable=0.5, panic=0, recent=10), ready=2,
                  now=T0 + 65).state.replicas == 1


def test_the_stable_window_sizes_the_service_and_the_bounds_hold() -> None:
    state = ScaleState(replicas=2, changed=T0 - 600)
    move = decide(SCALING, state, Load(stable=5.0, panic=5.5, recent=50), ready=2, now=T0)
    assert move.state.replicas == 3 and move.state.panic_since is None
    assert move.reason == "3 replicas for 5.0 requests in flight over 60s (target 2 each)"
    assert move.state.changed == T0
    same = decide(SCALING, move.state, Load(stable=5.0, panic=5.0, recent=50), ready=3,
                  now=T0 + 2)
    assert same.state == move.state  # unchanged: the same labels, nothing written
    big = decide(SCALING, state, Load(stable=100, panic=100, recent=900), ready=2, now=T0)
    assert big.state.replicas == 8 and "held at maxReplicas" in big.reason
    floor = Scaling(minReplicas=3, maxReplicas=5)
    low = decide(floor, ScaleState(replicas=3, changed=T0), Load(0, 0, 0), ready=3, now=T0)
    assert low.state.replicas == 3 and "held at minReplicas 3" in low.reason
    # Requests per second as the target.
    rps = Scaling(metric="rps", target=50, maxReplicas=10)
    assert decide(rps, ScaleState(replicas=1, changed=T0), Load(120, 130, 5000), ready=1,
                  now=T0).state.replicas == 3


def test_an_idle_version_goes_to_zero_and_a_request_wakes_it() -> None:
    woke_at = T0 - 10
    state = ScaleState(replicas=1, changed=woke_at)
    # Idle, but woken 10 s ago only: the metrics may not show its request yet.
    assert decide(SCALING, state, Load(0, 0, 0), ready=1, now=T0).state.replicas == 1
    # A request within the idle period keeps it.
    assert decide(SCALING, state, Load(0, 0, 1), ready=1, now=T0 + 30).state.replicas == 1
    zero = decide(SCALING, state, Load(0, 0, 0), ready=1, now=T0 + 30)
    assert zero.state.replicas == 0
    assert zero.reason.startswith("no request for 30s: scaled to zero")
    # At zero, the load says nothing (no replica to measure); a wake does.
    for load in (Load(0, 0, 0), "asleep"):
        still = decide(SCALING, zero.state, load, ready=0, now=T0 + 40)
        assert still.state == zero.state and not worth_writing(
            state_labels({}, zero.state, zero.reason, zero.kind), still)
    woken = decide(SCALING, zero.state, "unreadable", ready=0, now=T0 + 41, woken=True)
    assert woken.state == ScaleState(replicas=1, changed=T0 + 41, woken_at=T0 + 41)
    # Its requests still go to the activator a while after the wake.
    assert woken.state.held(T0 + 42) and not woken.state.held(T0 + 41 + WAKE_HOLD_SECONDS)
    assert woken.reason == "woken by a request: starting 1 replica"
    # A wake for a version that is up changes nothing.
    assert decide(SCALING, woken.state, Load(0, 0, 0), ready=1, now=T0 + 42,
                  woken=True).state.replicas == 1


def test_unreadable_load_keeps_the_replicas() -> None:
    state = ScaleState(replicas=3, changed=T0)
    move = decide(SCALING, state, "Prometheus answered 503", ready=3, now=T0 + 500)
    assert move.state == state
    assert move.reason == "3 replicas kept: the load cannot be read (Prometheus answered 503)"


def test_the_decision_lives_in_labels() -> None:
    state = ScaleState(replicas=4, changed=T0, panic_since=T0 - 1)
    labels = state_labels({"other": "x", L.SCALE_PANIC: "1"}, state, "why")
    assert read_state(labels) == state and labels[L.STATUS_SCALE] == "why"
    calm = state_labels(labels, ScaleState(replicas=2, changed=T0), "calm")
    assert L.SCALE_PANIC not in calm and read_state(calm) == ScaleState(2, T0)
    assert without_scale(calm) == {"other": "x"}
    assert read_state({L.SCALE_REPLICAS: "many"}) is None
    assert wanted_replicas(SCALING, {}) == 1 == first_state(SCALING, T0).replicas
    assert wanted_replicas(SCALING, calm) == 2
    # A smaller maxReplicas since the decision: the service follows at once.
    assert wanted_replicas(Scaling(maxReplicas=1), calm) == 1


MANIFEST = """
apiVersion: aiart/v1
kind: Model
metadata: {{name: iris, version: "1"}}
spec:
  runtime: sklearn
  artifact: {{uri: "s3://models/iris.pkl"}}
  {extra}
"""


@pytest.mark.parametrize(("extra", "problem"), [
    ("scaling: {minReplicas: 3, maxReplicas: 2}", "maxReplicas 2 is below minReplicas 3"),
    ("scaling: {panicWindow: 1s}", "panicWindow 1s must be between 4s and 10m"),
    ("scaling: {stableWindow: 10s, panicWindow: 20s}", "longer than stableWindow"),
    ("scaling: {scaleToZeroAfter: 2s}", "scaleToZeroAfter 2s must be between 5s and 24h"),
    ("scaling: {metric: memory}", "metric"),
    ("scaling: {target: 0}", "target"),
    ("replicas: 2\n  scaling: {maxReplicas: 4}", "give one of them"),
])
def test_bad_scaling_is_named(extra: str, problem: str) -> None:
    with pytest.raises(ManifestError) as error:
        parse_manifest(MANIFEST.format(extra=extra))
    assert problem in str(error.value)


def test_good_scaling_parses() -> None:
    manifest = parse_manifest(MANIFEST.format(
        extra="scaling: {minReplicas: 0, maxReplicas: 4, target: 8, scaleToZeroAfter: 2m}"))
    scaling = manifest.spec.scaling
    assert scaling is not None and scaling.idle_seconds == 120 and scaling.target == 8.0
    assert scaling.activation_seconds == 30 and scaling.first_replicas == 1


def test_only_a_new_size_or_a_new_kind_of_reason_is_written() -> None:
    labels = state_labels({}, ScaleState(2, T0), "2 replicas for 3.1 requests", "load")
    assert not worth_writing(labels, Move(ScaleState(2, T0), "2 replicas for 3.4 requests",
                                          "load"))
    assert worth_writing(labels, Move(ScaleState(3, T0 + 1), "3 replicas", "load"))
    assert worth_writing(labels, Move(ScaleState(2, T0), "2 replicas kept", "unreadable"))
    assert worth_writing(labels, Move(ScaleState(2, T0, panic_since=T0), "burst", "burst"))
    assert worth_writing({}, Move(ScaleState(1, T0), "first", "load"))
