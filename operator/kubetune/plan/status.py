"""Status from a run's state: conditions (with observedGeneration and stable
lastTransitionTime), the phase, the events of a transition, and the wire-format status dict."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubetune.api.common import CommonStatus, Condition, ConditionStatus
from kubetune.plan.state import RunState
from kubetune.plan.world import Event


@dataclass(frozen=True)
class CondSpec:
    """A condition before timestamps: type, status, reason, message."""

    type: str
    status: ConditionStatus
    reason: str
    message: str = ""


def run_conditions(done_type: str, state: RunState, waiting: CondSpec | None) -> list[CondSpec]:
    """The done condition (Ready or Succeeded), Waiting and Running, from the run's state."""
    if state.phase in ("Succeeded", "Ready"):
        done = CondSpec(done_type, "True", state.reason, state.message)
    elif state.phase == "Failed":
        done = CondSpec(done_type, "False", state.reason, state.message)
    else:
        unfinished: ConditionStatus = "False" if done_type == "Ready" else "Unknown"
        done = CondSpec(done_type, unfinished, state.reason, state.message)
    wait = waiting or CondSpec("Waiting", "False", "DependenciesReady", "")
    running = CondSpec(
        "Running",
        "True" if state.phase == "Running" else "False",
        state.reason,
        state.message if state.phase == "Running" else "",
    )
    specs = [done, wait, running]
    if done_type != "Ready":  # `kubectl wait --for=condition=Ready` works on every kind
        ready = state.phase == "Succeeded"
        specs.append(CondSpec("Ready", "True" if ready else "False", state.reason, state.message))
    failed_dependency = state.phase == "Waiting" and state.warning
    return specs + kstatus_conditions(state.phase, state.reason, state.message, failed_dependency)


def kstatus_conditions(
    phase: str, reason: str, message: str, stalled: bool = False
) -> list[CondSpec]:
    """``Reconciling`` and ``Stalled``, the abnormal-true conditions kstatus (Flux health checks,
    cli-utils, ``kubectl wait``) reads: Reconciling while a run is pending, running or waiting
    for a dependency; Stalled when it failed (or waits on a dependency that failed)."""
    if phase == "Failed" or stalled:
        return [
            CondSpec("Reconciling", "False", reason, ""),
            CondSpec("Stalled", "True", reason, message),
        ]
    if phase in ("Pending", "Running", "Waiting"):
        return [
            CondSpec("Reconciling", "True", reason, message),
            CondSpec("Stalled", "False", reason, ""),
        ]
    return [CondSpec("Reconciling", "False", reason, ""), CondSpec("Stalled", "False", reason, "")]


def conditions(
    previous: list[Condition], specs: list[CondSpec], generation: int, now: datetime
) -> list[Condition]:
    """metav1 Conditions: lastTransitionTime changes only when a condition's status does."""
    out: list[Condition] = []
    for spec in specs:
        old = next((c for c in previous if c.type == spec.type), None)
        since = old.last_transition_time if old is not None and old.status == spec.status else None
        out.append(
            Condition(
                type=spec.type,
                status=spec.status,
                reason=spec.reason,
                message=spec.message,
                observed_generation=generation,
                last_transition_time=since or now,
            )
        )
    return out


def transition_events(
    previous: CommonStatus | None, run_id: str | None, state: RunState, done_type: str
) -> list[Event]:
    """Events for a change of run, phase or reason since the previous status."""
    events: list[Event] = []
    prev_reason = None
    if previous is not None:
        done = next((c for c in previous.conditions if c.type == done_type), None)
        prev_reason = done.reason if done is not None else None
        if previous.run_id is not None and previous.run_id != run_id:
            events.append(
                Event("Normal", "NewRun", f"spec changed: run {run_id} replaces {previous.run_id}")
            )
    same = (
        previous is not None
        and previous.run_id == run_id
        and previous.phase == state.phase
        and prev_reason == state.reason
    )
    if not same:
        message = f"{state.phase}: {state.message}" if state.message else state.phase
        warning = state.warning or state.phase == "Failed"
        events.append(Event("Warning" if warning else "Normal", state.reason, message))
    return events


def wire_status(status: CommonStatus) -> dict[str, Any]:
    """camelCase status; unset top-level fields are null so a merge patch clears them."""
    body = status.model_dump(mode="json", by_alias=True, exclude_none=True)
    for name, info in type(status).model_fields.items():
        body.setdefault(info.alias or name, None)
    return body
