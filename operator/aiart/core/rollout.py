"""Progressive delivery: a new version's rollout, step by step. Pure: no I/O.

A version whose manifest has ``spec.rollout`` does not take the model's
traffic when it answers; it takes over from the version that is current
then (its *stable*), as the strategy says:

- canary: a share of the model's traffic that rises step by step; at the
  end of each step a gate reads its error rate and p99 latency over the
  step (Prometheus), and a failed gate, or the version no longer
  answering, gives all traffic back to the stable and fails the version;
  after the last step (100 %) it is promoted: it becomes current.
- shadow: a mirrored copy of a share of live requests, whose answers no
  caller sees; promoted or aborted by hand.

Where a rollout stands is written on the new version's config (labels
``aiart.rollout.*``), so that an operator that restarts mid-rollout goes on
from the same step, and a step's clock is the time its start was written.
Commands (promote, abort) arrive as a label on that config too.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum

from aiart.core.spec import Gate, Rollout, RolloutStrategy

PREFIX = "aiart.rollout."
PHASE = "aiart.rollout.phase"
STABLE = "aiart.rollout.stable"
STEP = "aiart.rollout.step"
SINCE = "aiart.rollout.since"
REASON = "aiart.rollout.reason"
FIGURES = "aiart.rollout.figures"
# Written by the API and the CLI (a user's promote or abort), read and removed
# by the operator.
COMMAND = "aiart.rollout.command"
COMMANDS = ("promote", "abort")
# How soon to look again when the gate cannot be read (Prometheus away).
RETRY_SECONDS = 5.0


class RolloutPhase(StrEnum):
    PROGRESSING = "Progressing"  # a canary, at some step
    SHADOWING = "Shadowing"  # a shadow, receiving mirrored requests
    PROMOTED = "Promoted"  # it took over: it may be current
    ABORTED = "Aborted"  # it gave the traffic back; the stable stays current


@dataclass(frozen=True, slots=True)
class RolloutState:
    phase: RolloutPhase
    stable: str  # the version it takes over from ("" when there was none)
    step: int = 0  # index into the canary's steps
    since: float = 0.0  # when the step (or the shadow) began, Unix seconds
    reason: str = ""  # why it was promoted or aborted
    figures: str = ""  # the gate's last reading, in words

    @property
    def done(self) -> bool:
        return self.phase in (RolloutPhase.PROMOTED, RolloutPhase.ABORTED)


@dataclass(frozen=True, slots=True)
class Figures:
    """The new version's requests over a step, as Prometheus counts them."""

    requests: float
    errors: float  # server errors (5xx)
    p99_ms: float | None  # None: no request to take a quantile of

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests > 0 else 0.0

    def describe(self) -> str:
        p99 = "-" if self.p99_ms is None or math.isnan(self.p99_ms) else f"{self.p99_ms:.1f} ms"
        return (f"{self.requests:.0f} requests, error rate {self.error_rate:.4f}, "
                f"p99 {p99}")


def read_state(labels: Mapping[str, str]) -> RolloutState | None:
    """The rollout written on a version's config, or None (not begun, or
    labels nobody could have written: a hand-edited phase is ignored)."""
    try:
        phase = RolloutPhase(labels.get(PHASE, ""))
        return RolloutState(phase=phase, stable=labels.get(STABLE, ""),
                            step=int(labels.get(STEP, "0")),
                            since=float(labels.get(SINCE, "0")),
                            reason=labels.get(REASON, ""),
                            figures=labels.get(FIGURES, ""))
    except ValueError:
        return None


def state_labels(labels: Mapping[str, str], state: RolloutState | None) -> dict[str, str]:
    """``labels`` with the rollout's own replaced by ``state``'s (none: removed);
    a command is consumed by the same write."""
    out = {k: v for k, v in labels.items() if not k.startswith(PREFIX)}
    if state is not None:
        out[PHASE] = state.phase.value
        out[STABLE] = state.stable
        out[STEP] = str(state.step)
        out[SINCE] = f"{state.since:.3f}"
        if state.reason:
            out[REASON] = state.reason[:500]
        if state.figures:
            out[FIGURES] = state.figures[:500]
    return out


def command_of(labels: Mapping[str, str]) -> str | None:
    value = labels.get(COMMAND)
    return value if value in COMMANDS else None


def begin(rollout: Rollout, stable: str | None, now: float) -> RolloutState:
    """The state of a rollout that starts now, from ``stable`` (the version
    current when the new one first answered; None: there is none, and the
    new version takes over at once)."""
    if not stable:
        return RolloutState(phase=RolloutPhase.PROMOTED, stable="", since=now,
                            reason="no version was serving: nothing to roll out from")
    phase = (RolloutPhase.PROGRESSING if rollout.strategy is RolloutStrategy.CANARY
             else RolloutPhase.SHADOWING)
    return RolloutState(phase=phase, stable=stable, step=0, since=now)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # "pass", "hold" or "fail"
    reason: str


def judge(gate: Gate, figures: Figures) -> Verdict:
    """A step's figures against the gate."""
    if figures.requests < max(gate.minRequests, 1e-9) and gate.minRequests > 0:
        return Verdict("hold", f"waiting for requests: {figures.requests:.0f} of at least "
                               f"{gate.minRequests} over the step")
    failed = []
    if figures.error_rate > gate.maxErrorRate:
        failed.append(f"error rate {figures.error_rate:.4f} > {gate.maxErrorRate}")
    if figures.p99_ms is not None and not math.isnan(figures.p99_ms) and (
            figures.p99_ms > gate.maxP99Ms):
        failed.append(f"p99 {figures.p99_ms:.1f} ms > {gate.maxP99Ms:g} ms")
    if failed:
        return Verdict("fail", "; ".join(failed) + f" ({figures.describe()})")
    return Verdict("pass", figures.describe())


@dataclass(frozen=True, slots=True)
class Move:
    """What to do now: the state to write (the same when nothing changed),
    seconds until the rollout needs another look (None: only an event), and
    what happened, for the status."""

    state: RolloutState
    requeue_after: float | None
    note: str


def step_due(rollout: Rollout, state: RolloutState, now: float) -> float:
    """Seconds until the current step's gate is read (0 or less: now)."""
    return state.since + rollout.interval_seconds - now


def decide(rollout: Rollout, state: RolloutState, *, now: float, healthy: bool,
           command: str | None, figures: Figures | str | None) -> Move:
    """The next move of a rollout under way. ``figures``: the step's, read
    once the step is due (a str: why they could not be read; None: not read,
    as the step is not due)."""
    if state.done:
        return Move(state, None, state.reason)
    if command == "abort":
        return Move(replace(state, phase=RolloutPhase.ABORTED, since=now,
                            reason="aborted by hand"), None, "aborted by hand")
    if command == "promote":
        return Move(replace(state, phase=RolloutPhase.PROMOTED, since=now,
                            reason="promoted by hand"), None, "promoted by hand")
    if not healthy:
        reason = "the new version stopped answering through the gateway"
        return Move(replace(state, phase=RolloutPhase.ABORTED, since=now, reason=reason),
                    None, reason)
    if state.phase is RolloutPhase.SHADOWING:
        return Move(state, None, f"mirroring {rollout.mirror_percent}% of requests")
    weights = rollout.step_weights
    due = step_due(rollout, state, now)
    where = f"step {state.step + 1} of {len(weights)}: {weights[state.step]}%"
    if due > 0 or figures is None:
        return Move(state, max(due, 0.0) + 0.5, f"{where}, gate read in {max(due, 0):.0f} s")
    if isinstance(figures, str):
        return Move(state, RETRY_SECONDS, f"{where}; cannot read the gate's figures: {figures}")
    verdict = judge(rollout.gate, figures)
    if verdict.outcome == "hold":
        return Move(state, float(min(rollout.interval_seconds, 30)), f"{where}; {verdict.reason}")
    if verdict.outcome == "fail":
        reason = f"the gate failed at {where}: {verdict.reason}"
        return Move(replace(state, phase=RolloutPhase.ABORTED, since=now, reason=reason),
                    None, reason)
    if state.step + 1 >= len(weights):
        reason = f"promoted after {len(weights)} steps (last: {verdict.reason})"
        return Move(replace(state, phase=RolloutPhase.PROMOTED, since=now, reason=reason),
                    None, reason)
    following = replace(state, step=state.step + 1, since=now, figures=verdict.reason)
    return Move(following, rollout.interval_seconds + 0.5,
                f"step {state.step + 2} of {len(weights)}: {weights[state.step + 1]}% "
                f"(step {state.step + 1} passed: {verdict.reason})")


def canary_weight(rollout: Rollout, state: RolloutState) -> int:
    """The new version's percent of the model's traffic now (a canary)."""
    if state.phase is RolloutPhase.PROGRESSING:
        return rollout.step_weights[min(state.step, len(rollout.step_weights) - 1)]
    return 100 if state.phase is RolloutPhase.PROMOTED else 0


def describe(rollout: Rollout, state: RolloutState) -> str:
    """One line for ``aiart.status.rollout`` and ``aiart rollout status``."""
    if state.phase is RolloutPhase.PROGRESSING:
        weights = rollout.step_weights
        weight = weights[state.step]
        last = f"; last gate: {state.figures}" if state.figures else ""
        return (f"canary from version {state.stable}: step {state.step + 1} of {len(weights)}, "
                f"{weight}% of traffic to it, {100 - weight}% to version {state.stable}{last}")
    if state.phase is RolloutPhase.SHADOWING:
        return (f"shadow of version {state.stable}: {rollout.mirror_percent}% of requests "
                "mirrored; promote or abort by hand")
    return f"{state.phase.value.lower()}: {state.reason}"
