"""Plan a FeedbackLoop: follow its cycles, promote winners, start cycles when triggered.

Each reconciliation, in order:

1. Resolve the champion: the latest promoted challenger (``status.championCycle``), else
   ``spec.champion`` (which must be done, like any dependency); and find the base Dataset.
2. Follow every active cycle (:mod:`kubetune.plan.feedback.cycles`), oldest first: create its
   collect Job, then its resources once the feedback is collected, and record how it ended.
   A challenger whose gates passed against the current champion is promoted: the champion
   moves to it and, with ``promotion.mode: patch``, the target object is patched. The patch is
   idempotent, so a crash before the status write repeats it harmlessly. With
   ``promotion.approval: manual`` it first waits in ``AwaitingApproval`` (a condition, an
   Event, ``status.awaitingApproval``) for the annotation ``kubetune.dev/approve=cN``.
   With ``promotion.publish.kserve`` the champion is served by an InferenceService and a
   promotion rolls out as a canary (:mod:`kubetune.plan.serving`); a canary aborted by
   ``kubetune.dev/abort-rollout=cN`` returns the champion to the previous model.
3. Check the triggers (:mod:`kubetune.plan.feedback.triggers`) and start at most one cycle.
4. Delete what is no longer needed: resources and collect Jobs of cycles beyond
   ``historyLimit``, finished count Jobs but the latest, drift Evaluations but the latest.

The status (:mod:`kubetune.plan.feedback.status`) keeps what the world cannot tell again (the
champion, its cycle, the cycle counter, finished cycles in ``history``); everything else is
recomputed. Cycle ``N`` started and not yet finished is in ``activeRuns``; a cycle whose Job or
resources exist beyond ``status.cycles`` (a crash before the status write) is adopted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubetune.api.common import API_VERSION, RunRecord
from kubetune.api.feedback import FeedbackLoopStatus
from kubetune.api.resources import Dataset, FeedbackLoop
from kubetune.plan import serving
from kubetune.plan.feedback import triggers
from kubetune.plan.feedback.children import (
    CYCLE_LABEL,
    collect_job,
    cursor_uri,
    cycle_id,
    cycle_of,
    cycle_resources,
    object_ref,
    parse_count_id,
    promotion_patch,
    role_of,
)
from kubetune.plan.feedback.cycles import (
    Champion,
    Cycle,
    Stage,
    assess,
    collected_records,
    cycle_choice,
    cycle_numbers,
    observe_cycle,
    record_of,
)
from kubetune.plan.feedback.status import (
    LoopState,
    approval_events,
    finished_event,
    loop_status,
    readiness_events,
)
from kubetune.plan.naming import spec_config_map_name
from kubetune.plan.refs import Wait, resolve_model
from kubetune.plan.runs import job_finished
from kubetune.plan.status import wire_status
from kubetune.plan.world import Event, ObservedWorld, OperatorConfig, Plan


@dataclass
class Pass:
    """One reconciliation of a loop: its inputs and what the phases decided so far."""

    loop: FeedbackLoop
    world: ObservedWorld
    config: OperatorConfig
    previous: FeedbackLoopStatus
    champion: Champion
    base: Dataset | Wait
    started: int
    plan: Plan = field(default_factory=Plan)
    history: list[RunRecord] = field(default_factory=list)
    active: list[tuple[Cycle, Stage]] = field(default_factory=list)
    completed: int = 0
    served: serving.LoopServing | None = None


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
    """Plan a FeedbackLoop: follow the active cycles, check the triggers, clean up, report."""
    previous = loop.status or FeedbackLoopStatus()
    known = cycle_numbers(world)
    now = Pass(
        loop,
        world,
        config,
        previous,
        _champion(loop, world, previous),
        _base_dataset(loop, world),
        started=max([previous.cycles, *known]),
        history=list(previous.history),
    )
    _follow_cycles(now, _active_cycles(previous, known))
    found = _check_triggers(now)
    now.plan.deletions += _cleanup(
        loop, world, now.history, [c.number for c, _ in now.active], found
    )
    _report(now, found)
    return now.plan


def _active_cycles(previous: FeedbackLoopStatus, known: set[int]) -> list[int]:
    """Cycles started and not finished: in ``activeRuns``, or found beyond ``status.cycles``."""
    finished_before = {r.run_id for r in previous.history}
    active_before = set(previous.active_runs or [])
    return sorted(
        n
        for n in known | {n for n in map(cycle_of, active_before) if n is not None}
        if cycle_id(n) not in finished_before
        and (cycle_id(n) in active_before or n > previous.cycles)
    )


def _follow_cycles(now: Pass, active: list[int]) -> None:
    """Advance each active cycle; record the finished ones; promote; serve the champion."""
    loop, plan = now.loop, now.plan
    champion = now.champion
    before = serving.Served(champion.uri, champion.training_uri, champion.cycle)
    promoted: serving.Served | None = None
    for number in active:
        cycle = observe_cycle(number, now.world)
        outcome = assess(cycle, loop, now.champion.uri, now.world.now)
        if isinstance(outcome, Stage):
            _advance(loop, cycle, outcome, now.champion, now.base, now.config, plan)
            now.active.append((cycle, outcome))
            continue
        now.completed += 1
        now.history.insert(0, record_of(cycle, loop, outcome, now.world.now))
        plan.events.append(finished_event(cycle, outcome))
        if outcome.reason == "Promoted":
            assert outcome.challenger is not None and outcome.challenger_training is not None
            now.champion = Champion(outcome.challenger, outcome.challenger_training, number)
            promoted = serving.Served(outcome.challenger, outcome.challenger_training, number)
            patch = promotion_patch(loop, outcome.challenger)
            if patch is not None:
                plan.patches.append(patch)
    now.history = now.history[: loop.spec.history_limit]
    champion = now.champion
    current = serving.Served(champion.uri, champion.training_uri, champion.cycle)
    now.served = serving.serve_loop(loop, now.world, current, promoted, before)
    revert = now.served.revert if now.served is not None else None
    if now.served is not None and revert is not None:  # a canary aborted by annotation
        now.champion = Champion(revert.uri, revert.training_uri, revert.cycle)
        now.history = serving.rolled_back(now.history, now.served)


def _check_triggers(now: Pass) -> triggers.Triggers:
    """Run the triggers; start a cycle when one fired and one may start."""
    loop, previous, champion = now.loop, now.previous, now.champion
    collecting = any(stage.reason == "Collecting" for _, stage in now.active)
    since_cycle = _latest_collected(loop, now.world, now.history, now.active, champion)
    ready = champion.wait is None and not isinstance(now.base, Wait)
    ctx = triggers.Context(
        loop=loop,
        world=now.world,
        config=now.config,
        previous=previous,
        champion=champion.uri,
        since_cycle=since_cycle,
        since_cursor=cursor_uri(loop, since_cycle, now.config) if since_cycle else None,
        record_schema=_record_schema(now.base),
        can_start=ready
        and not loop.spec.suspend
        and not collecting
        and len(now.active) < loop.spec.max_concurrent_runs,
        idle=not now.active,
    )
    found = triggers.check(ctx)
    now.plan.children += found.children
    now.plan.deletions += found.deletions
    if found.trigger is not None:
        _start_cycle(now, found.trigger)
    skipped = found.schedule_skipped
    if skipped is not None and skipped != previous.last_schedule_time:
        why = "the loop is suspended" if loop.spec.suspend else "a cycle is running"
        message = f"skipped the cycle scheduled at {skipped.isoformat()}: {why}"
        now.plan.events.append(Event("Normal", "ScheduleSkipped", message))
    return found


def _start_cycle(now: Pass, trigger: triggers.Trigger) -> None:
    """Create the next cycle's collect Job."""
    now.started += 1
    number = now.started
    schema = _record_schema(now.base)
    now.plan.children += collect_job(now.loop, number, now.champion.cycle, schema, now.config)
    now.active.append((Cycle(number, None, {}), Stage("Collecting", "creating the collect Job")))
    message = f"cycle {cycle_id(number)} started: {trigger.message}"
    now.plan.events.append(Event("Normal", "CycleStarted", message))


def _report(now: Pass, found: triggers.Triggers) -> None:
    """The status, its Events, when to look again, and the champion's serving."""
    loop, previous, plan, config = now.loop, now.previous, now.plan, now.config
    clock = now.world.now
    wait = now.champion.wait or (now.base if isinstance(now.base, Wait) else None)
    started_now = found.trigger is not None
    state = LoopState(
        champion=now.champion,
        wait=wait,
        active=now.active,
        history=now.history,
        found=found,
        started=now.started,
        completed=previous.generation + now.completed,
        last_cycle_time=clock if started_now else previous.last_cycle_time,
    )
    status = loop_status(loop, previous, clock, state)
    plan.status = wire_status(status)
    plan.events += readiness_events(previous, status, wait)
    plan.events += approval_events(previous, now.active)
    if now.active:
        found.wake_in(config.progress_interval_seconds)
    elif wait is not None:
        found.wake_in(config.dependency_recheck_seconds)
    for _, stage in now.active:
        if stage.approval is not None and stage.approval.deadline is not None:
            found.wake_in((stage.approval.deadline - clock).total_seconds())
    plan.requeue_after = found.requeue_after
    if now.served is not None:
        rollout = now.served.rollout
        plan.status["rollout"] = rollout.wire() if rollout is not None else None
        serving.merge_into(plan, loop, now.served, config, clock)


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
        choice = cycle_choice(cycle, loop)
        wanted = cycle_resources(
            loop, base, cycle.number, champion.uri, champion.training_uri, config, choice
        )
        plan.children += [body for body in wanted if role_of(body) not in cycle.resources]


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
