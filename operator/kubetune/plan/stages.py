"""Staged runs: one run as ordered Jobs, e.g. a parallel Dataset's map, then reduce. Pure.

A kind whose planner declares stages (:attr:`kubetune.plan.step.KindPlanner.stages`) runs them
one after another, each as its own Job, ``{name}-{step}-{stage}-{run}``; a stage of several
pods is an Indexed Job whose failed pods are retried per index. The current stage is the last
one whose Job exists (a later Job is only created once the earlier ones succeeded, so an
earlier Job that is gone, cleaned up by its TTL, had succeeded). When the current stage
succeeds and another follows, the planner creates the next Job. ``status.stages`` lists every
stage (phase, pods done of total, pod failures), recomputed from the observed Jobs each pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from kubetune.api.common import RunSettings
from kubetune.api.steps import LiveProgress
from kubetune.plan.jobs import LABEL_STAGE, stage_job_name
from kubetune.plan.naming import ANNOTATION_SPEC_HASH, LABEL_RUN_ID
from kubetune.plan.state import RunState, clip, job_state
from kubetune.plan.world import ObservedJob

# Stage phases that are not run phases.
_STAGE_PHASES = {"Ready": "Succeeded", "Waiting": "Pending"}


@dataclass(frozen=True)
class Stage:
    """One stage of a run: its name, its pods (task indexes), the env its pods get."""

    name: str
    completions: int = 1
    env: tuple[dict[str, Any], ...] = ()


def job_names(stages: tuple[Stage, ...], resource_name: str, step: str, run_id: str) -> list[str]:
    """The Job name of each stage, in order."""
    return [stage_job_name(resource_name, step, run_id, s.name, s.completions) for s in stages]


def current(
    stages: tuple[Stage, ...], run_jobs: tuple[ObservedJob, ...], names: list[str]
) -> tuple[int, ObservedJob | None]:
    """(index of the current stage, its Job): the last stage whose Job exists, else (0, None)."""
    by_name = {job.name: job for job in run_jobs}
    for index in reversed(range(len(stages))):
        found = by_name.get(names[index])
        if found is not None:
            return index, found
    return 0, None


def stage_settings(settings: RunSettings, stage: Stage) -> RunSettings:
    """The run settings as a stage's Job sees them: as many pods to succeed as task indexes."""
    resources = settings.resources.model_copy(update={"nodes": stage.completions})
    return settings.model_copy(update={"resources": resources})


def stage_state(
    state: RunState,
    stages: tuple[Stage, ...],
    at: int,
    job: ObservedJob,
    run_jobs: tuple[ObservedJob, ...],
) -> RunState:
    """The run's state from its current stage's: messages name the stage and its pods done,
    the run starts with its first stage's Job."""
    starts = [j.start_time for j in run_jobs if j.start_time is not None]
    start = min(starts) if starts else state.start_time
    stage = stages[at]
    last = at == len(stages) - 1
    message = state.message
    if not (last and state.phase == "Succeeded"):
        done = min(job.succeeded, stage.completions)
        message = clip(
            f"stage {at + 1}/{len(stages)} {stage.name} ({done}/{stage.completions} pods "
            f"done): {state.message}"
        )
    if at > 0 and state.phase == "Pending" and state.reason == "Starting":
        # A later stage's Job starting: the run is still underway, not back to Pending.
        return replace(state, phase="Running", reason="Running", message=message, start_time=start)
    return replace(state, message=message, start_time=start)


def advancing(previous: RunState, stages: tuple[Stage, ...], at: int, next_job: str) -> RunState:
    """The run's state while the next stage's Job is being created."""
    done, following = stages[at], stages[at + 1]
    return RunState(
        "Running",
        "Running",
        f"stage {at + 1}/{len(stages)} {done.name} done ({done.completions}/"
        f"{done.completions} pods); starting stage {at + 2} {following.name} (Job {next_job})",
        start_time=previous.start_time,
    )


def statuses(
    stages: tuple[Stage, ...],
    run_jobs: tuple[ObservedJob, ...],
    names: list[str],
    settings: RunSettings,
    progress: LiveProgress | None = None,
) -> list[dict[str, Any]]:
    """``status.stages``: each stage's phase, pods done of total and pod failures."""
    at, _ = current(stages, run_jobs, names)
    by_name = {job.name: job for job in run_jobs}
    found: list[dict[str, Any]] = []
    for index, (stage, name) in enumerate(zip(stages, names, strict=True)):
        entry: dict[str, Any] = {"name": stage.name, "total": stage.completions, "job": name}
        job = by_name.get(name)
        if job is not None:
            state = job_state(job, stage_settings(settings, stage), progress)
            entry.update(
                phase=_STAGE_PHASES.get(state.phase, state.phase),
                completed=min(job.succeeded, stage.completions),
                failed=job.failed,
            )
        elif index < at:  # its Job is gone (TTL) but a later stage started: it succeeded
            entry.update(phase="Succeeded", completed=stage.completions, failed=0)
        else:
            entry.update(phase="NotStarted", completed=0, failed=0)
        found.append(entry)
    return found


def assumed_done(job: dict[str, Any]) -> ObservedJob:
    """A stage's Job (as built) observed as complete: what `kubetune plan` assumes to render
    the stages that follow it."""
    meta, spec = job["metadata"], job["spec"]
    return ObservedJob(
        name=meta["name"],
        run_id=meta["labels"][LABEL_RUN_ID],
        succeeded=int(spec.get("completions") or 1),
        conditions=({"type": "Complete", "status": "True"},),
        spec_hash=meta["annotations"].get(ANNOTATION_SPEC_HASH),
    )


def every_stage(
    first: list[dict[str, Any]], replan: Callable[[tuple[ObservedJob, ...]], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """The objects of every stage of a run, in order: ``first`` (a plan's children), then the
    children ``replan`` returns once each staged Job before them is assumed complete."""
    children = list(first)
    done: list[ObservedJob] = []
    while True:
        staged = [c for c in children if c["kind"] == "Job" and LABEL_STAGE in _labels(c)]
        if len(staged) == len(done):
            return children
        done.append(assumed_done(staged[len(done)]))
        children.extend(c for c in replan(tuple(done)) if c not in children)


def _labels(obj: dict[str, Any]) -> dict[str, str]:
    return dict(obj.get("metadata", {}).get("labels") or {})
