"""The FeedbackLoop controller: counts feedback, runs cycles (collect Job, then a Dataset,
FinetuneJob, optional preference Dataset and FinetuneJob, optional Compression and Evaluation it
owns; :mod:`kubetune.plan.feedback`) and promotes passing challengers.

The planner decides everything; the shared machinery observes the loop's own resources, wakes
the loop when one of them changes readiness, applies the promotion patch to the target of any
kind, and deletes old cycles. This module exports the loop's gauges: pending records, cycles
started, and promotions (a change of ``status.championCycle`` to a new cycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetune.api.feedback import FeedbackLoopStatus
from kubetune.controllers import metrics
from kubetune.controllers.base import KindController

# status.pendingRecords: the wire name of the field, from the model.
_PENDING_RECORDS = str(FeedbackLoopStatus.model_fields["pending_records"].alias)


def promoted(status: Mapping[str, Any], previous: Mapping[str, Any]) -> bool:
    """Whether ``status`` records a promotion that ``previous`` did not."""
    champion_cycle = status.get("championCycle")
    return champion_cycle is not None and champion_cycle != previous.get("championCycle")


def observe_status(
    namespace: str, name: str, status: Mapping[str, Any], previous: Mapping[str, Any]
) -> None:
    pending = status.get(_PENDING_RECORDS)
    metrics.record_feedback(
        namespace,
        name,
        pending_records=int(pending) if isinstance(pending, int | float) else None,
        cycles=int(status.get("cycles") or 0),
        promoted=promoted(status, previous),
    )


CONTROLLER = KindController(
    kind="FeedbackLoop", observe_status=observe_status, series=metrics.PER_LOOP
)
