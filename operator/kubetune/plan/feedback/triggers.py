"""When a FeedbackLoop starts a cycle: enough new records, a schedule, or a drifting champion.

* ``minNewRecords``: every ``checkIntervalSeconds`` a ``feedback`` count Job (run id
  ``s<K>-<slot>``) counts the usable records that arrived since cycle K collected (K = 0: since
  ever). Enough of them start a cycle. A count only stands for the latest collected cycle, so a
  rejected challenger does not retrigger on the same records.
* ``schedule``: a cron expression, evaluated like a CronJob with ``concurrencyPolicy: Forbid``:
  missed times collapse into one, and a time that comes while a cycle runs (or the loop is
  suspended) is skipped and recorded in ``status.lastScheduleTime``.
* ``drift``: every ``checkIntervalSeconds`` while no cycle runs, an Evaluation
  ``<loop>-drift-<slot>`` scores the champion alone on the loop's prompts; a score below the
  threshold starts a cycle.
* by hand: a new value of the annotation ``kubetune.dev/trigger`` (e.g. a timestamp) starts one
  cycle as soon as one may start; ``status.lastManualTrigger`` records the value acted on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from croniter import croniter

from kubetune.api.common import API_VERSION
from kubetune.api.contract import ANNOTATION_TRIGGER, RESULT_PENDING_RECORDS
from kubetune.api.feedback import FeedbackLoopStatus
from kubetune.api.resources import Evaluation, FeedbackLoop
from kubetune.plan.feedback.children import (
    DRIFT_LABEL,
    count_id,
    counts_dir,
    drift_evaluation,
    feedback_job,
    feedback_settings,
    object_ref,
    parse_count_id,
)
from kubetune.plan.state import clip, job_state
from kubetune.plan.world import ObservedJob, ObservedWorld, OperatorConfig

TRIGGER_ANNOTATION = ANNOTATION_TRIGGER
MAX_MISSED_SCHEDULES = 10_000


@dataclass(frozen=True)
class Trigger:
    """Why a cycle starts."""

    reason: str  # NewRecords, Schedule, Drift
    message: str


@dataclass
class Triggers:
    """What the triggers found, and the objects that keep them watching."""

    trigger: Trigger | None = None
    children: list[dict[str, Any]] = field(default_factory=list)
    deletions: list[dict[str, Any]] = field(default_factory=list)
    pending_records: int | None = None
    last_scan_time: datetime | None = None
    last_schedule_time: datetime | None = None
    schedule_skipped: datetime | None = None  # a schedule time that came while busy
    drift_score: float | None = None
    manual_trigger: str | None = None  # the annotation value acted on (now or before)
    problems: list[str] = field(default_factory=list)
    requeue_after: float | None = None

    def wake_in(self, seconds: float | None) -> None:
        if seconds is not None:
            seconds = max(seconds, 1.0)
            current = self.requeue_after
            self.requeue_after = seconds if current is None else min(current, seconds)


@dataclass(frozen=True)
class Context:
    """What the trigger checks need to know about the loop right now."""

    loop: FeedbackLoop
    world: ObservedWorld
    config: OperatorConfig
    previous: FeedbackLoopStatus
    champion: str | None
    since_cycle: int  # the latest cycle that collected (0: none)
    since_cursor: str | None  # that cycle's cursor
    record_schema: str
    can_start: bool  # capacity left, nothing collecting, not suspended, champion known
    idle: bool  # no cycle at all is running


def check(ctx: Context) -> Triggers:
    """Evaluate every trigger; at most one cycle start is proposed."""
    found = Triggers()
    _manual(ctx, found)
    _schedule(ctx, found)
    _drift(ctx, found)
    _count(ctx, found)
    return found


def _slot(ctx: Context) -> tuple[int, float]:
    interval = ctx.loop.spec.triggers.check_interval_seconds
    now = ctx.world.now.timestamp()
    slot = int(now // interval)
    return slot, (slot + 1) * interval - now


def _count(ctx: Context, found: Triggers) -> None:
    minimum = ctx.loop.spec.triggers.min_new_records
    if minimum is None:
        return
    slot, until_next = _slot(ctx)
    counts: list[tuple[int, ObservedJob]] = []
    for job in ctx.world.jobs:
        parsed = parse_count_id(job.run_id)
        if parsed is not None and parsed[0] == ctx.since_cycle:
            counts.append((parsed[1], job))
    latest = max(counts, key=lambda c: c[0], default=None)
    running = False
    if latest is not None:
        state = job_state(latest[1], feedback_settings(ctx.loop.spec), None)
        if state.phase == "Succeeded" and state.result is not None:
            found.pending_records = int(state.result.metrics.get(RESULT_PENDING_RECORDS, 0))
            found.last_scan_time = state.completion_time or latest[1].completion_time
        elif state.phase == "Failed":
            found.problems.append(
                clip(f"counting feedback failed: {state.reason}: {state.message}")
            )
        else:
            running = True
    pending = found.pending_records
    if found.trigger is None and pending is not None and pending >= minimum and ctx.can_start:
        found.trigger = Trigger(
            "NewRecords", f"{pending} new feedback records (minNewRecords {minimum})"
        )
        return
    if found.trigger is not None or not ctx.can_start:
        return
    if not running and (latest is None or latest[0] < slot):
        found.children += feedback_job(
            ctx.loop,
            count_id(ctx.since_cycle, slot),
            "count",
            ctx.since_cursor,
            ctx.record_schema,
            counts_dir(ctx.loop, ctx.config),
            ctx.config,
        )
    found.wake_in(until_next)


def _manual(ctx: Context, found: Triggers) -> None:
    found.manual_trigger = ctx.previous.last_manual_trigger
    token = ctx.loop.metadata.annotations.get(TRIGGER_ANNOTATION)
    if not token or token == ctx.previous.last_manual_trigger or not ctx.can_start:
        return
    found.manual_trigger = token
    found.trigger = Trigger("Manual", f"requested by annotation {TRIGGER_ANNOTATION}={token}")


def _schedule(ctx: Context, found: Triggers) -> None:
    expression = ctx.loop.spec.triggers.schedule
    if expression is None:
        return
    now = ctx.world.now
    base = (
        ctx.previous.last_schedule_time
        or ctx.loop.metadata.creation_timestamp
        or ctx.previous.last_cycle_time
        or now
    )
    times = croniter(expression, base)
    upcoming: datetime = times.get_next(datetime)
    due: datetime | None = None
    for _ in range(MAX_MISSED_SCHEDULES):
        if upcoming > now:
            break
        due = upcoming
        upcoming = times.get_next(datetime)
    found.wake_in((upcoming - now).total_seconds())
    found.last_schedule_time = ctx.previous.last_schedule_time
    if due is None:
        return
    found.last_schedule_time = due
    if not ctx.can_start:
        found.schedule_skipped = due
    elif found.trigger is None:  # else the cycle starting now serves this time too
        found.trigger = Trigger("Schedule", f"scheduled time {due.isoformat()} ({expression})")


def _drift(ctx: Context, found: Triggers) -> None:
    drift = ctx.loop.spec.triggers.drift
    checks: list[tuple[int, Evaluation]] = []
    for (kind, _name), resource in ctx.world.owned.items():
        label = resource.metadata.labels.get(DRIFT_LABEL, "")
        if kind == "Evaluation" and isinstance(resource, Evaluation) and label.isdigit():
            checks.append((int(label), resource))
    checks.sort(key=lambda c: c[0])
    latest = checks[-1] if checks else None
    keep = {latest[1].name} if latest is not None else set()
    if drift is None or ctx.champion is None:
        keep = set()
    for _slot_of, old in checks:
        if old.name not in keep:
            found.deletions.append(object_ref(API_VERSION, "Evaluation", old.name, old.namespace))
    if drift is None or ctx.champion is None:
        return
    slot, until_next = _slot(ctx)
    running = False
    if latest is not None:
        evaluation = latest[1]
        status = evaluation.status
        current = status is not None and status.observed_generation == evaluation.generation
        done = current and status is not None and status.phase == "Succeeded"
        running = not (current and status is not None and status.phase in ("Succeeded", "Failed"))
        if done and status is not None and evaluation.spec.candidate.uri == ctx.champion:
            score = (status.results or {}).get(drift.metric)
            found.drift_score = score
            fresh = (
                ctx.previous.last_cycle_time is None
                or status.completion_time is None
                or status.completion_time > ctx.previous.last_cycle_time
            )
            if score is not None and score < drift.below and fresh and ctx.can_start:
                found.trigger = found.trigger or Trigger(
                    "Drift", f"champion {drift.metric} {score:.4g} is below {drift.below:g}"
                )
    due = latest is None or latest[0] < slot
    if ctx.idle and ctx.can_start and not running and found.trigger is None and due:
        found.children.append(drift_evaluation(ctx.loop, slot, ctx.champion))
        if latest is not None:  # the new check replaces it
            found.deletions.append(
                object_ref(API_VERSION, "Evaluation", latest[1].name, latest[1].namespace)
            )
    found.wake_in(until_next)
