"""Plan a FeedbackLoop: follow its cycles, promote winners, start cycles when triggered.

Each reconciliation, in order:

1. Resolve the champion: the latest promoted challenger (``status.championCycle``), else
   ``spec.champion`` (which must be done, like any dependency); and find the base Dataset.
2. Follow every active cycle (:mod:`kubetune.plan.feedback_cycles`), oldest first: create its
   collect Job, then its resources once the feedback is collected, and record how it ended.
   A challenger whose gates passed against the current champion is promoted: the champion
   moves to it and, with ``promotion.mode: patch``, the target object is patched. The patch is
   idempotent, so a crash before the status write repeats it harmlessly. With
   ``promotion.approval: manual`` it first waits in ``AwaitingApproval`` (a condition, an
   Event, ``status.awaitingApproval``) for the annotation ``kubetune.dev/approve=cN``.
   With ``promotion.publish.kserve`` the champion is served by an InferenceService and a
   promotion rolls out as a canary (:mod:`kubetune.plan.serving`); a canary aborted by
   ``kubetune.dev/abort-rollout=cN`` returns the champion to the previous model.
3. Check the triggers (:mod:`kubetune.plan.feedback_triggers`) and start at most one cycle.
4. Delete what is no longer needed: resources and collect Jobs of cycles beyond
   ``historyLimit``, finished count Jobs but the latest, drift Evaluations but the latest.

The status keeps what the world cannot tell again (the champion, its cycle, the cycle counter,
finished cycles in ``history``); everything else is recomputed. Cycle ``N`` started and not yet
finished is in ``activeRuns``; a cycle whose Job or resources exist beyond ``status.cycles`` (a
crash before the status write) is adopted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubetune.api.common import API_VERSION, RunRecord
from kubetune.api.feedback import FeedbackLoopStatus
from kubetune.api.resources import Dataset, FeedbackLoop
from kubetune.plan import feedback_triggers as triggers
from kubetune.plan import serving
from kubetune.plan.feedback_children import (
    CYCLE_LABEL,
    collect_job,
    cursor_uri,
    cycle_id,
    cycle_of,
    cycle_resources,
    object_ref,
    parse_count_id,
    promotion_patch,
)
from kubetune.plan.feedback_cycles import (
    Cycle,
    Finished,
    Stage,
    assess,
    collected_records,
    cycle_numbers,
    observe_cycle,
    record_of,
)
from kubetune.plan.naming import spec_config_map_name
from kubetune.plan.refs import Wait, resolve_model
from kubetune.plan.runs import job_finished
from kubetune.plan.status import CondSpec, conditions, kstatus_conditions, wire_status
from kubetune.plan.world import Event, ObservedWorld, OperatorConfig, Plan


@dataclass
class Champion:
    """The model in production and the model the next challenger trains from."""

    uri: str | None
    training_uri: str | None
    cycle: int | None
    wait: Wait | None = None


def _champion(loop: FeedbackLoop, world: ObservedWorld, previous: FeedbackLoopStatus) -> Champion:
    if previous.champion_cycle is not None and previous.champion:
        training = previous.champion_training_uri or previous.champion
        return Champion(previous.champion, training, previous.champion_cycle)
    resolved = resolve_model(loop.spec.champion, world, "champion")
    if isinstance(resolved, Wait):
        return Champion(None, None, None, resolved)
    return Champion(resolved.uri, resolved.uri, None)


def _record_schema(base: Dataset | Wait) -> str:
    """The schema collected feedback is written in: the base Dataset's."""
    return base.spec.record_schema if isinstance(base, Dataset) else "instruction"


def _base_dataset(loop: FeedbackLoop, world: ObservedWorld) -> Dataset | Wait:
    name = loop.spec.base_dataset.name
    assert name is not None  # the spec's CEL rule requires a named Dataset
    found = world.resources.get(("Dataset", name))
    if not isinstance(found, Dataset):
        return Wait("DatasetNotFound", f"base Dataset {name} does not exist")
    return found


def plan_feedback(loop: FeedbackLoop, world: ObservedWorld, config: OperatorConfig) -> Plan:
    """Plan a FeedbackLoop."""
    previous = loop.status or FeedbackLoopStatus()
    plan = Plan()
    champion = _champion(loop, world, previous)
    base = _base_dataset(loop, world)
    now = world.now

    known = cycle_numbers(world)
    started = max([previous.cycles, *known])
    finished_before = {r.run_id for r in previous.history}
    active_before = set(previous.active_runs or [])
    active = sorted(
        n
        for n in known | {n for n in map(cycle_of, active_before) if n is not None}
        if cycle_id(n) not in finished_before
        and (cycle_id(n) in active_before or n > previous.cycles)
    )

    # --- follow the active cycles --------------------------------------------------------
    history = list(previous.history)
    before = serving.Served(champion.uri, champion.training_uri, champion.cycle)
    promoted: serving.Served | None = None
    still_active: list[tuple[Cycle, Stage]] = []
    completed = 0
    for number in active:
        cycle = observe_cycle(number, world)
        outcome = assess(cycle, loop, champion.uri, now)
        if isinstance(outcome, Stage):
            _advance(loop, cycle, outcome, champion, base, config, plan)
            still_active.append((cycle, outcome))
            continue
        completed += 1
        history.insert(0, record_of(cycle, loop, outcome, now))
        plan.events.append(_finished_event(cycle, outcome))
        if outcome.reason == "Promoted":
            assert outcome.challenger is not None and outcome.challenger_training is not None
            champion = Champion(outcome.challenger, outcome.challenger_training, number)
            promoted = serving.Served(champion.uri, champion.training_uri, number)
            patch = promotion_patch(loop, outcome.challenger)
            if patch is not None:
                plan.patches.append(patch)
    history = history[: loop.spec.history_limit]
    current = serving.Served(champion.uri, champion.training_uri, champion.cycle)
    served = serving.serve_loop(loop, world, current, promoted, before)
    if served is not None and served.revert is not None:  # a canary aborted by annotation
        champion = Champion(served.revert.uri, served.revert.training_uri, served.revert.cycle)
        history = serving.rolled_back(history, served)

    # --- triggers --------------------------------------------------------------------------
    collecting = any(stage.reason == "Collecting" for _, stage in still_active)
    since_cycle = _latest_collected(loop, world, history, still_active, champion)
    ready = champion.wait is None and not isinstance(base, Wait)
    record_schema = _record_schema(base)
    ctx = triggers.Context(
        loop=loop,
        world=world,
        config=config,
        previous=previous,
        champion=champion.uri,
        since_cycle=since_cycle,
        since_cursor=cursor_uri(loop, since_cycle, config) if since_cycle else None,
        record_schema=record_schema,
        can_start=ready
        and not loop.spec.suspend
        and not collecting
        and len(still_active) < loop.spec.max_concurrent_runs,
        idle=not still_active,
    )
    found = triggers.check(ctx)
    plan.children += found.children
    plan.deletions += found.deletions
    last_cycle_time = previous.last_cycle_time
    if found.trigger is not None:
        number = started + 1
        started = number
        plan.children += collect_job(loop, number, champion.cycle, record_schema, config)
        stage = Stage("Collecting", "creating the collect Job")
        still_active.append((Cycle(number, None, {}), stage))
        last_cycle_time = now
        plan.events.append(
            Event(
                "Normal",
                "CycleStarted",
                f"cycle {cycle_id(number)} started: {found.trigger.message}",
            )
        )
    if found.schedule_skipped is not None and found.schedule_skipped != previous.last_schedule_time:
        why = "the loop is suspended" if loop.spec.suspend else "a cycle is running"
        plan.events.append(
            Event(
                "Normal",
                "ScheduleSkipped",
                f"skipped the cycle scheduled at {found.schedule_skipped.isoformat()}: {why}",
            )
        )

    plan.deletions += _cleanup(loop, world, history, [c.number for c, _ in still_active], found)

    # --- status ----------------------------------------------------------------------------
    wait = champion.wait or (base if isinstance(base, Wait) else None)
    status = _status(
        loop,
        previous,
        now,
        champion,
        wait,
        still_active,
        history,
        found,
        started=started,
        completed=previous.generation + completed,
        last_cycle_time=last_cycle_time,
    )
    plan.status = wire_status(status)
    plan.events += _readiness_events(previous, status, wait)
    plan.events += _approval_events(loop, previous, still_active)
    if still_active:
        found.wake_in(config.progress_interval_seconds)
    elif wait is not None:
        found.wake_in(config.dependency_recheck_seconds)
    for _, stage in still_active:
        if stage.approval is not None and stage.approval.deadline is not None:
            found.wake_in((stage.approval.deadline - now).total_seconds())
    plan.requeue_after = found.requeue_after
    if served is not None:
        plan.status["rollout"] = served.rollout.wire() if served.rollout is not None else None
        serving.merge_into(plan, loop, served, config, now)
    return plan


def _advance(
    loop: FeedbackLoop,
    cycle: Cycle,
    stage: Stage,
    champion: Champion,
    base: Dataset | Wait,
    config: OperatorConfig,
    plan: Plan,
) -> None:
    """Create what an active cycle is missing."""
    if stage.needs_collect_job:
        schema = _record_schema(base)
        plan.children += collect_job(loop, cycle.number, champion.cycle, schema, config)
    if stage.needs_resources and isinstance(base, Dataset) and champion.uri is not None:
        assert champion.training_uri is not None
        wanted = cycle_resources(
            loop, base, cycle.number, champion.uri, champion.training_uri, config
        )
        plan.children += [body for body in wanted if body["kind"] not in cycle.resources]


def _latest_collected(
    loop: FeedbackLoop,
    world: ObservedWorld,
    history: list[RunRecord],
    active: list[tuple[Cycle, Stage]],
    champion: Champion,
) -> int:
    """The newest cycle whose collect step wrote a cursor (0: none)."""
    found = [champion.cycle or 0]
    found += [
        number
        for r in history
        if (number := cycle_of(r.run_id)) is not None
        and r.results is not None
        and "records" in r.results
    ]
    found += [c.number for c, _ in active if collected_records(c, loop) is not None]
    return max(found)


def _cleanup(
    loop: FeedbackLoop,
    world: ObservedWorld,
    history: list[RunRecord],
    active: list[int],
    found: triggers.Triggers,
) -> list[dict[str, Any]]:
    """Objects of cycles beyond the history limit, and finished count Jobs but the newest."""
    keep = {r.run_id for r in history} | {cycle_id(n) for n in active}
    deletions: list[dict[str, Any]] = []
    for (kind, name), resource in sorted(world.owned.items()):
        label = resource.metadata.labels.get(CYCLE_LABEL, "")
        if label.isdigit() and cycle_id(int(label)) not in keep:
            deletions.append(object_ref(API_VERSION, kind, name, loop.namespace))
    counts = [j for j in world.jobs if parse_count_id(j.run_id) is not None]
    newest = max(counts, key=lambda j: parse_count_id(j.run_id) or (0, 0), default=None)
    if any(child["kind"] == "Job" for child in found.children):
        newest = None  # a new count starts now: every finished one is old
    for job in world.jobs:
        parsed = parse_count_id(job.run_id)
        old_cycle = job.run_id.startswith("c") and job.run_id not in keep
        old_count = parsed is not None and job is not newest and job_finished(job)
        if old_cycle or old_count:
            deletions.append(object_ref("batch/v1", "Job", job.name, loop.namespace))
            deletions.append(
                object_ref("v1", "ConfigMap", spec_config_map_name(job.name), loop.namespace)
            )
    return deletions


def _status(
    loop: FeedbackLoop,
    previous: FeedbackLoopStatus,
    now: datetime,
    champion: Champion,
    wait: Wait | None,
    active: list[tuple[Cycle, Stage]],
    history: list[RunRecord],
    found: triggers.Triggers,
    *,
    started: int,
    completed: int,
    last_cycle_time: datetime | None,
) -> FeedbackLoopStatus:
    specs: list[CondSpec] = []
    if wait is not None:
        specs.append(CondSpec("Ready", "False", wait.reason, wait.message))
    else:
        specs.append(CondSpec("Ready", "True", "ChampionServing", f"champion: {champion.uri}"))
    if active:
        stage = active[-1][1]
        message = "; ".join(f"{c.run_id}: {s.reason}: {s.message}" for c, s in active)
        specs.append(CondSpec("Cycling", "True", stage.reason, message))
    else:
        specs.append(CondSpec("Cycling", "False", "Idle", _idle_message(loop, found)))
    awaiting = [s.approval for _, s in active if s.approval is not None]
    if loop.spec.promotion.approval == "manual":
        if awaiting:
            runs = ", ".join(a.run_id for a in awaiting)
            text = next(s.message for _, s in active if s.approval is not None)
            specs.append(CondSpec("AwaitingApproval", "True", "GatesPassed", f"{runs}: {text}"))
        else:
            specs.append(
                CondSpec("AwaitingApproval", "False", "NothingToApprove", "no challenger waits")
            )
    if active:
        phase = "Running"
    elif wait is not None:
        phase = "Waiting"
    elif loop.spec.suspend:
        phase = "Suspended"
    else:
        phase = "Ready"
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
    cycling = next(c for c in specs if c.type == "Cycling")
    message = cycling.message if active or wait is None else wait.message
    if found.problems:
        message = f"{message}; {'; '.join(found.problems)}"
    prior = previous.conditions
    latest = history[0] if history else None
    return FeedbackLoopStatus(
        phase=phase,
        conditions=conditions(prior, specs, loop.generation, now),
        observed_generation=loop.generation,
        run_id=cycle_id(started) if started else None,
        start_time=last_cycle_time,
        completion_time=latest.completion_time if latest is not None and not active else None,
        output_uri=champion.uri,
        results=latest.results if latest is not None else None,
        message=message,
        history=history,
        champion=champion.uri,
        champion_cycle=champion.cycle,
        champion_training_uri=champion.training_uri if champion.cycle is not None else None,
        generation=completed,
        cycles=started,
        pending_records=found.pending_records,
        last_cycle_time=last_cycle_time,
        last_schedule_time=found.last_schedule_time,
        last_scan_time=found.last_scan_time or previous.last_scan_time,
        last_manual_trigger=found.manual_trigger,
        drift_score=found.drift_score if found.drift_score is not None else previous.drift_score,
        active_runs=[c.run_id for c, _ in active] or None,
        awaiting_approval=awaiting or None,
    )


def _idle_message(loop: FeedbackLoop, found: triggers.Triggers) -> str:
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


def _approval_events(
    loop: FeedbackLoop, previous: FeedbackLoopStatus, active: list[tuple[Cycle, Stage]]
) -> list[Event]:
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


def _finished_event(cycle: Cycle, outcome: Finished) -> Event:
    run = cycle.run_id
    if outcome.reason == "Promoted":
        return Event("Normal", "Promoted", f"cycle {run}: {outcome.message}")
    if outcome.failed:
        return Event("Warning", "CycleFailed", f"cycle {run}: {outcome.message}")
    return Event("Normal", f"Cycle{outcome.reason}", f"cycle {run}: {outcome.message}")


def _readiness_events(
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
