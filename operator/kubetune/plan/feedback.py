"""Plan a FeedbackLoop: not supported yet; the status says so, and nothing is created."""

from __future__ import annotations

from kubetune.api.feedback import FeedbackLoopStatus
from kubetune.api.resources import FeedbackLoop
from kubetune.plan.state import RunState
from kubetune.plan.status import CondSpec, conditions, transition_events, wire_status
from kubetune.plan.world import ObservedWorld, OperatorConfig, Plan

REASON = "NotSupported"
MESSAGE = (
    "FeedbackLoop is not supported by this version of the operator yet; "
    "run its FinetuneJob and Evaluation as separate resources"
)


def plan_feedback(resource: FeedbackLoop, world: ObservedWorld, config: OperatorConfig) -> Plan:
    """Ready=False, reason NotSupported; a Warning event when first seen."""
    previous = resource.status
    state = RunState("Pending", REASON, MESSAGE, warning=True)
    prior = previous.conditions if previous is not None else []
    status = FeedbackLoopStatus(
        phase=state.phase,
        conditions=conditions(
            prior, [CondSpec("Ready", "False", REASON, MESSAGE)], resource.generation, world.now
        ),
        observed_generation=resource.generation,
        message=MESSAGE,
        champion=previous.champion if previous is not None else None,
        generation=previous.generation if previous is not None else 0,
    )
    run_id = previous.run_id if previous is not None else None
    events = transition_events(previous, run_id, state, "Ready")
    return Plan(status=wire_status(status), events=events)
