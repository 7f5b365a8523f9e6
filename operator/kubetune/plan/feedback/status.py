"""A FeedbackLoop's status: conditions, phase and message, and the Events of its transitions.

The status keeps what the world cannot tell again (the champion, its cycle, the cycle counter,
finished cycles in ``history``); everything else is recomputed on every pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from kubetune.api.common import RunRecord
from kubetune.api.feedback import FeedbackLoopStatus
from kubetune.api.resources import FeedbackLoop
from kubetune.plan.feedback.children import cycle_id
from kubetune.plan.feedback.cycles import Champion, Cycle, Finished, Stage
from kubetune.plan.feedback.triggers import Triggers
from kubetune.plan.refs import Wait
from kubetune.plan.status import CondSpec, conditions, kstatus_conditions
from kubetune.plan.world import Event


@dataclass
class LoopState:
    """What one reconciliation decided: the inputs of the loop's status."""

    champion: Champion
    wait: Wait | None
    active: list[tuple[Cycle, Stage]]
    history: list[RunRecord]
    found: Triggers
    started: int
    completed: int
    last_cycle_time: datetime | None


def loop_status(
    loop: FeedbackLoop, previous: FeedbackLoopStatus, now: datetime, state: LoopState
) -> FeedbackLoopStatus:
    """The loop's status after this pass."""
    specs = _condition_specs(loop, state)
    awaiting = [s.approval for _, s in state.active if s.approval is not None]
    latest = state.history[0] if state.history else None
    champion, found = state.champion, state.found
    return FeedbackLoopStatus(
        phase=_phase(loop, state),
        conditions=conditions(previous.conditions, specs, loop.generation, now),
        observed_generation=loop.generation,
        run_id=cycle_id(state.started) if state.started else None,
        start_time=state.last_cycle_time,
        completion_time=latest.completion_time if latest is not None and not state.active else None,
        output_uri=champion.uri,
        results=latest.results if latest is not None else None,
        message=_message(specs, state),
        history=state.history,
        champion=champion.uri,
        champion_cycle=champion.cycle,
        champion_training_uri=champion.training_uri if champion.cycle is not None else None,
        generation=state.completed,
        cycles=state.started,
        pending_records=found.pending_records,
        last_cycle_time=state.last_cycle_time,
        last_schedule_time=found.last_schedule_time,
        last_scan_time=found.last_scan_time or previous.last_scan_time,
        last_manual_trigger=found.manual_trigger,
        drift_score=found.drift_score if found.drift_score is not None else previous.drift_score,
        active_runs=[c.run_id for c, _ in state.active] or None,
        awaiting_approval=awaiting or None,
    )


def _condition_specs(loop: FeedbackLoop, state: LoopState) -> list[CondSpec]:
    """Ready, Cycling, AwaitingApproval (manual approval only) and the kstatus conditions."""
    wait, active = state.wait, state.active
    specs: list[CondSpec] = []
    if wait is not None:
        specs.append(CondSpec("Ready", "False", wait.reason, wait.message))
    else:
        message = f"champion: {state.champion.uri}"
        specs.append(CondSpec("Ready", "True", "ChampionServing", message))
    if active:
        message = "; ".join(f"{c.run_id}: {s.reason}: {s.message}" for c, s in active)
        specs.append(CondSpec("Cycling", "True", active[-1][1].reason, message))
    else:
        specs.append(CondSpec("Cycling", "False", "Idle", _idle_message(loop, state.found)))
    if loop.spec.promotion.approval == "manual":
        specs.append(_approval_condition(active))
    # kstatus: a loop is Reconciling until its inputs are known, Stalled when one failed; its
    # cycles are its normal life, not a reconciliation in progress.
    specs.extend(
        kstatus_conditions(
            "Waiting" if wait is not None else "Ready",
            wait.reason if wait is not None else "ChampionServing",
            wait.message if wait is not None else "",
            stalled=wait is not None and wait.failed,
        )
    )
    return specs


def _approval_condition(active: list[tuple[Cycle, Stage]]) -> CondSpec:
    awaiting = [s.approval for _, s in active if s.approval is not None]
    if not awaiting:
        return CondSpec("AwaitingApproval", "False", "NothingToApprove", "no challenger waits")
    runs = ", ".join(a.run_id for a in awaiting)
    text = next(s.message for _, s in active if s.approval is not None)
    return CondSpec("AwaitingApproval", "True", "GatesPassed", f"{runs}: {text}")


def _phase(loop: FeedbackLoop, state: LoopState) -> str:
    if state.active:
        return "Running"
    if state.wait is not None:
        return "Waiting"
    return "Suspended" if loop.spec.suspend else "Ready"


def _message(specs: list[CondSpec], state: LoopState) -> str:
    cycling = next(c for c in specs if c.type == "Cycling")
    wait = state.wait
    message = cycling.message if state.active or wait is None else wait.message
    if state.found.problems:
        message = f"{message}; {'; '.join(state.found.problems)}"
    return message


def _idle_message(loop: FeedbackLoop, found: Triggers) -> str:
    if loop.spec.suspend:
        return "suspended: no new cycles start"
    parts = []
    minimum = loop.spec.triggers.min_new_records
    if minimum is not None:
        pending = "?" if found.pending_records is None else str(found.pending_records)
        parts.append(f"{pending}/{minimum} new feedback records")
    if loop.spec.triggers.schedule:
        parts.append(f"schedule {loop.spec.triggers.schedule}")
    drift = loop.spec.triggers.drift
    if drift is not None:
        score = "?" if found.drift_score is None else f"{found.drift_score:.4g}"
        parts.append(f"champion {drift.metric} {score} (retrain below {drift.below:g})")
    return "waiting for a trigger: " + ", ".join(parts)


def approval_events(previous: FeedbackLoopStatus, active: list[tuple[Cycle, Stage]]) -> list[Event]:
    """One AwaitingApproval Event per challenger, when it starts waiting."""
    before = {a.run_id for a in previous.awaiting_approval or []}
    events = []
    for cycle, stage in active:
        request = stage.approval
        if request is None or request.run_id in before:
            continue
        parts = [f"cycle {cycle.run_id}: {stage.message}"]
        if request.feedback_uri:
            parts.append(f"feedback: {request.feedback_uri}")
        if request.deadline is not None:
            parts.append(f"rejected unless approved by {request.deadline.isoformat()}")
        events.append(Event("Normal", "AwaitingApproval", "; ".join(parts)))
    return events


def finished_event(cycle: Cycle, outcome: Finished) -> Event:
    """The Event of a cycle that ended: Promoted, CycleFailed or Cycle<reason>."""
    run = cycle.run_id
    if outcome.reason == "Promoted":
        return Event("Normal", "Promoted", f"cycle {run}: {outcome.message}")
    if outcome.failed:
        return Event("Warning", "CycleFailed", f"cycle {run}: {outcome.message}")
    return Event("Normal", f"Cycle{outcome.reason}", f"cycle {run}: {outcome.message}")


def readiness_events(
    previous: FeedbackLoopStatus, status: FeedbackLoopStatus, wait: Wait | None
) -> list[Event]:
    """An event when the loop starts waiting or becomes ready (once per transition)."""
    was = next((c for c in previous.conditions if c.type == "Ready"), None)
    now = next(c for c in status.conditions if c.type == "Ready")
    if was is not None and (was.status, was.reason) == (now.status, now.reason):
        return []
    if wait is not None:
        return [Event("Warning" if wait.failed else "Normal", wait.reason, wait.message)]
    return [Event("Normal", "Ready", now.message)]
