"""How many replicas a scalable version wants (manifest ``spec.scaling``).
Pure: no I/O; control/autoscaler.py reads the load and writes the labels.

Knative's KPA, on Swarm: the load (requests in flight, or requests per
second) is averaged over a stable window to size the service, and over a
short panic window to notice a burst. When the burst asks for at least
``panicThreshold`` times the replicas that are ready, the service grows at
once and does not shrink until a stable window has gone by without a burst,
so a dip in the middle of a rush does not flap it. Otherwise it follows the
stable window, shrinking by at most half at a time.

With ``minReplicas: 0``, a version that had no request for
``scaleToZeroAfter`` (and has not changed size for as long) goes to zero;
a request for it is then held by the activator, which wakes it (``woken``).

The decision lives in the version's config labels (``aiart.scale.*``), so
an operator that restarts neither forgets nor repeats one.

A version goes to zero in two steps (``paced``): first its requests go to
the activator (its wake routes outrank its own, core/traffic.py), and only
``SLEEP_LEAD_SECONDS`` later, once the gateway has taken that up, is its
service scaled to zero. Scaled first, its task would be gone while the
gateway still sent it requests: the gateway learns of a stopped task at its
next read of the whole swarm, which takes seconds more on a busy host than
a task drains (seen as 502s), whereas the operator's own routes are one
small read away.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

from aiart.core import labels as L
from aiart.core.spec import ScaleMetric, Scaling

# Between an idle version's requests going to the activator and its service
# going to zero: the gateway reads the operator's routes every second, the
# operator's answer may be a second old, and the gateway applies a provider's
# change at most every two seconds.
SLEEP_LEAD_SECONDS = 4.0
# After a wake, the version's requests still go to the activator (which
# passes them to its new task) this long: the gateway may not have read the
# swarm since the version's last task stopped, and its own routes may still
# lead there (seen in CI: 504s from callers just after a wake).
WAKE_HOLD_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class ScaleState:
    replicas: int  # wanted
    changed: float  # when ``replicas`` last changed (epoch seconds)
    panic_since: float | None = None  # while panicking: when a burst was last seen
    # While going to sleep: when it may go to zero (its requests go to the
    # activator meanwhile).
    sleep_at: float | None = None
    # When it was last woken from zero (its requests go to the activator for
    # WAKE_HOLD_SECONDS after).
    woken_at: float | None = None

    def held(self, now: float) -> bool:
        """Whether its requests go to the activator now: going to sleep,
        asleep, or woken a moment ago."""
        return (self.replicas == 0 or self.sleep_at is not None
                or (self.woken_at is not None and now - self.woken_at < WAKE_HOLD_SECONDS))


@dataclass(frozen=True, slots=True)
class Load:
    """A version's load as the gateway saw it (all its replicas together)."""

    stable: float  # concurrency or requests/s, averaged over the stable window
    panic: float  # the same over the panic window
    recent: float  # requests over the last scaleToZeroAfter


@dataclass(frozen=True, slots=True)
class Move:
    state: ScaleState
    reason: str  # aiart.status.scale
    # What kind of reason: woken, unreadable, asleep, burst, load, zero. The
    # labels are written when the replicas or this change, not each time a
    # figure in the reason moves (every write brings a reconcile pass).
    kind: str = "load"


def worth_writing(labels: Mapping[str, str], move: Move) -> bool:
    """Whether ``move`` changes what the labels record, beyond the figures."""
    before = read_state(labels)
    return (before is None or before.replicas != move.state.replicas
            or (before.panic_since is None) != (move.state.panic_since is None)
            or (before.sleep_at is None) != (move.state.sleep_at is None)
            or labels.get(L.SCALE_KIND) != move.kind)


def first_state(scaling: Scaling, now: float) -> ScaleState:
    return ScaleState(replicas=scaling.first_replicas, changed=now)


def read_state(labels: Mapping[str, str]) -> ScaleState | None:
    """The decision recorded on a config, if any (a damaged one: none)."""
    try:
        replicas = int(labels[L.SCALE_REPLICAS])
        changed = float(labels.get(L.SCALE_CHANGED, "0"))
        panic = labels.get(L.SCALE_PANIC, "")
        sleep_at = labels.get(L.SCALE_SLEEP_AT, "")
        woken_at = labels.get(L.SCALE_WOKEN_AT, "")
        return ScaleState(replicas=max(replicas, 0), changed=changed,
                          panic_since=float(panic) if panic else None,
                          sleep_at=float(sleep_at) if sleep_at else None,
                          woken_at=float(woken_at) if woken_at else None)
    except (KeyError, ValueError):
        return None


def state_labels(labels: Mapping[str, str], state: ScaleState, reason: str,
                 kind: str = "load") -> dict[str, str]:
    out = {k: v for k, v in labels.items()
           if k not in (L.SCALE_PANIC, L.SCALE_SLEEP_AT, L.SCALE_WOKEN_AT)}
    out[L.SCALE_REPLICAS] = str(state.replicas)
    out[L.SCALE_KIND] = kind
    out[L.SCALE_CHANGED] = f"{state.changed:.3f}"
    if state.panic_since is not None:
        out[L.SCALE_PANIC] = f"{state.panic_since:.3f}"
    if state.sleep_at is not None:
        out[L.SCALE_SLEEP_AT] = f"{state.sleep_at:.3f}"
    if state.woken_at is not None:
        out[L.SCALE_WOKEN_AT] = f"{state.woken_at:.3f}"
    out[L.STATUS_SCALE] = reason
    return out


def without_scale(labels: Mapping[str, str]) -> dict[str, str]:
    """A config's labels once its manifest no longer scales."""
    gone = (L.SCALE_REPLICAS, L.SCALE_CHANGED, L.SCALE_PANIC, L.SCALE_KIND, L.SCALE_SLEEP_AT,
            L.SCALE_WOKEN_AT, L.STATUS_SCALE)
    return {k: v for k, v in labels.items() if k not in gone}


def wanted_replicas(scaling: Scaling, labels: Mapping[str, str]) -> int:
    """What a version's service should run now: the recorded decision, or
    the first replicas of a version not decided on yet."""
    state = read_state(labels)
    if state is None:
        return scaling.first_replicas
    return min(state.replicas, scaling.maxReplicas) if state.replicas else 0


def _unit(scaling: Scaling) -> str:
    return ("requests in flight" if scaling.metric is ScaleMetric.CONCURRENCY
            else "requests/s")


def replicas_text(n: int) -> str:
    return f"{n} replica" + ("" if n == 1 else "s")


def decide(scaling: Scaling, state: ScaleState, load: Load | str, *, ready: int,
           now: float, woken: bool = False) -> Move:
    """The next decision. ``load``: the gateway's figures, or why they could
    not be read (then nothing changes but a wake). ``ready``: replicas that
    answer now. ``woken``: a request is held for this version."""
    if woken and state.replicas == 0:
        replicas = scaling.first_replicas
        return Move(ScaleState(replicas=replicas, changed=now, woken_at=now),
                    f"woken by a request: starting {replicas_text(replicas)}", "woken")
    if state.replicas == 0:  # no replica to measure: only a wake changes anything
        return Move(state, f"no request for {scaling.scaleToZeroAfter}: scaled to zero; "
                           "the next request wakes it", "zero")
    if isinstance(load, str):
        return Move(state, f"{replicas_text(state.replicas)} kept: the load cannot be read "
                           f"({load})", "unreadable")
    unit, target = _unit(scaling), scaling.target
    # A hair under a whole replica's worth is not a reason for another one.
    want_stable = math.ceil(load.stable / target - 1e-6)
    want_panic = math.ceil(load.panic / target - 1e-6)
    panic_since = state.panic_since
    if want_panic >= scaling.panicThreshold * max(ready, 1) and want_panic > state.replicas:
        panic_since = now
    elif panic_since is not None and now - panic_since >= scaling.stable_seconds:
        panic_since = None
    if panic_since is not None:
        wanted = max(state.replicas, want_panic, want_stable)
        reason = (f"burst: {load.panic:.1f} {unit} over {scaling.panicWindow} "
                  f"(target {target:g} each); {replicas_text(wanted)}, none given back until "
                  f"{scaling.stableWindow} without a burst")
    else:
        wanted = want_stable
        if wanted < state.replicas and state.replicas > 1:
            wanted = max(wanted, math.ceil(state.replicas / 2))  # at most half at a time
        reason = (f"{replicas_text(max(wanted, 1))} for {load.stable:.1f} {unit} over "
                  f"{scaling.stableWindow} (target {target:g} each)")
    floor = scaling.minReplicas
    if floor == 0:
        idle = load.recent <= 0 and now - state.changed >= scaling.idle_seconds
        floor = 0 if idle and panic_since is None else 1
    if wanted > scaling.maxReplicas:
        wanted, reason = scaling.maxReplicas, f"{reason}; held at maxReplicas"
    if wanted < floor:
        wanted = floor
        if scaling.minReplicas:
            reason = f"{reason}; held at minReplicas {scaling.minReplicas}"
    kind = "burst" if panic_since is not None else "load"
    if wanted == 0:
        reason, kind = (f"no request for {scaling.scaleToZeroAfter}: scaled to zero; "
                        "the next request wakes it"), "zero"
    changed = now if wanted != state.replicas else state.changed
    # A wake a moment ago is remembered through the decisions after it, until
    # it no longer holds its requests.
    woken_at = state.woken_at if state.woken_at is not None and wanted and (
        now - state.woken_at < WAKE_HOLD_SECONDS) else None
    return Move(ScaleState(replicas=wanted, changed=changed, panic_since=panic_since,
                           woken_at=woken_at), reason, kind)


def paced(state: ScaleState, move: Move, *, now: float,
          lead: float = SLEEP_LEAD_SECONDS) -> Move:
    """``move``, unless it puts an awake version to zero before its
    requests have gone to the activator for ``lead`` seconds: then the step
    that sends them there (``sleep_at``), or, until then, no change."""
    if move.state.replicas != 0 or state.replicas == 0:
        return move
    if state.sleep_at is not None and now >= state.sleep_at:
        return move
    sleep_at = state.sleep_at if state.sleep_at is not None else now + lead
    return Move(replace(state, panic_since=None, sleep_at=sleep_at),
                f"{move.reason.split(':')[0]}: its requests go to the activator, and it goes "
                "to zero in a moment", "sleeping")
