"""Rollouts within a reconcile pass: begin them, read their gates, move
them on, and say which versions may not be current yet (core/rollout.py
decides; this module reads Prometheus and writes the labels)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

from aiart.control.deps import Deps
from aiart.core.errors import TransientError
from aiart.core.plan import VersionPlan
from aiart.core.rollout import (
    Figures,
    RolloutPhase,
    RolloutState,
    begin,
    command_of,
    decide,
    describe,
    read_state,
    state_labels,
    step_due,
)
from aiart.core.spec import RolloutStrategy

log = logging.getLogger("aiart.rollout")


@dataclass
class RolloutPass:
    plans: list[VersionPlan]  # as given, with the configs this pass rewrote
    held: set[str] = field(default_factory=set)  # versions that may not be current
    notes: dict[str, str] = field(default_factory=dict)  # version -> aiart.status.rollout
    aborted: dict[str, str] = field(default_factory=dict)  # version -> why it was rolled back
    roles: dict[str, str] = field(default_factory=dict)  # version -> "canary" or "shadow" now
    requeue_after: float | None = None

    def wake(self, seconds: float | None) -> None:
        if seconds is not None:
            self.requeue_after = (seconds if self.requeue_after is None
                                  else min(self.requeue_after, seconds))


async def _write(deps: Deps, plan: VersionPlan, state: RolloutState) -> VersionPlan:
    wanted = state_labels(plan.config.labels, state)
    if wanted == dict(plan.config.labels):
        return plan
    updated = await deps.cluster.update_config_labels(plan.config, wanted)
    if updated is None:
        raise TransientError(f"config {plan.config.name} changed while its rollout was written")
    return replace(plan, config=updated)


async def drive_rollouts(deps: Deps, model: str, valid: list[VersionPlan], *,
                         ready: set[str], routed: set[str]) -> RolloutPass:
    """One step of every rollout of ``model`` (``valid``: oldest first)."""
    out = RolloutPass(plans=list(valid))
    if not valid:
        return out
    newest = valid[-1].manifest.metadata.version if valid[-1].manifest else ""
    versions = {p.manifest.metadata.version for p in valid if p.manifest}
    now = time.time()
    for index, plan in enumerate(out.plans):
        manifest = plan.manifest
        assert manifest is not None
        rollout, version = manifest.spec.rollout, manifest.metadata.version
        state = read_state(plan.config.labels)
        if rollout is None:
            continue
        if state is None:
            if version != newest or version not in ready:
                out.held.add(version)  # it begins once it answers, if still the newest
                continue
            stable = max((v for v in routed if v != version and v in versions),
                         key=lambda v: next(p.ordinal for p in valid
                                            if p.manifest and p.manifest.metadata.version == v),
                         default=None)
            state = begin(rollout, stable, now)
            log.info("%s version %s: rollout begins: %s", model, version,
                     describe(rollout, state))
        elif not state.done and version != newest:
            state = replace(state, phase=RolloutPhase.ABORTED, since=now,
                            reason=f"superseded by version {newest}")
        elif not state.done and state.stable not in versions:
            state = replace(state, phase=RolloutPhase.PROMOTED, since=now,
                            reason=f"version {state.stable} is gone")
        elif not state.done:
            figures: Figures | str | None = None
            command = command_of(plan.config.labels)
            if (rollout.strategy is RolloutStrategy.CANARY and command is None
                    and step_due(rollout, state, now) <= 0):
                if deps.gate is None:
                    figures = "no Prometheus is configured (AIART_PROMETHEUS_URL)"
                else:
                    figures = await deps.gate.figures(model, version, now - state.since)
            move = decide(rollout, state, now=now, healthy=version in ready,
                          command=command, figures=figures)
            if move.state != state or command is not None:
                log.info("%s version %s: %s", model, version, move.note)
            state = move.state
            out.wake(move.requeue_after)
            if not state.done:
                out.notes[version] = f"{describe(rollout, state)}; {move.note}"
        out.plans[index] = plan = await _write(deps, plan, state)
        if state.phase is RolloutPhase.ABORTED:
            out.held.add(version)
            out.aborted[version] = state.reason
        elif state.phase is not RolloutPhase.PROMOTED:
            out.held.add(version)
            out.roles[version] = ("shadow" if state.phase is RolloutPhase.SHADOWING
                                  else "canary")
            out.notes.setdefault(version, describe(rollout, state))
            if state.phase is RolloutPhase.PROGRESSING:
                out.wake(max(step_due(rollout, state, now), 0.0) + 0.5)
        else:
            out.notes[version] = describe(rollout, state)
    return out
