"""The planning flow every runnable kind shares (Dataset, FinetuneJob, Compression, Evaluation).

1. Pick the current run (one per generation; a suspend-only change keeps the run).
2. No Job yet: resolve references into a step spec and return the run's children, or Wait.
   Job present: read its state; patch ``spec.suspend`` when the resource asks for it.
   Job gone after a finished run (TTL): keep the finished status, create nothing.
3. Write the status: phase, conditions, results of a finished run, history, events.

A kind plugs in a :class:`KindPlanner`: how to build its step spec, and which status fields,
conditions and events its :class:`~kubetune.api.steps.StepResult` gives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kubetune.api.common import CommonStatus, Phase, Progress, RunSettings, Usage
from kubetune.api.kinds import KIND_INFO
from kubetune.api.resources import AnyResource
from kubetune.api.steps import StepName, StepResult, StepSpec
from kubetune.plan import runs
from kubetune.plan import stages as staging
from kubetune.plan.jobs import JobRequest, build_children
from kubetune.plan.quantity import to_cores
from kubetune.plan.refs import Wait
from kubetune.plan.state import RunState, job_state
from kubetune.plan.status import (
    CondSpec,
    conditions,
    run_conditions,
    transition_events,
    wire_status,
)
from kubetune.plan.world import Event, ObservedJob, ObservedWorld, OperatorConfig, Plan

COMMON_FIELDS = frozenset(CommonStatus.model_fields)
# The reason of a run whose spec.image is outside the operator's allowlist (nothing runs).
IMAGE_NOT_ALLOWED = "ImageNotAllowed"


@dataclass(frozen=True)
class RunContext:
    """What a kind's step-spec builder needs."""

    resource: AnyResource
    world: ObservedWorld
    config: OperatorConfig
    run_id: str
    output_uri: str

    def base(self) -> dict[str, Any]:
        """The fields every step spec has: producer, output URI, progress port."""
        return {
            "producer": runs.producer(self.resource, self.run_id),
            "output_uri": self.output_uri,
            "progress_port": self.config.progress_port,
        }


@dataclass(frozen=True)
class Built:
    """A resolved step spec, plus env the kind adds (e.g. the judge API key reference)."""

    spec: StepSpec
    env: tuple[dict[str, Any], ...] = ()


def _no_fields(result: StepResult) -> dict[str, Any]:
    return {}


def _no_conditions(result: StepResult) -> list[CondSpec]:
    return []


def _one_stage(resource: AnyResource, output_uri: str, run_id: str) -> tuple[staging.Stage, ...]:
    return ()


@dataclass(frozen=True)
class KindPlanner:
    """The kind-specific parts of planning."""

    step: StepName
    build: Callable[[RunContext], Built | Wait]
    # Kind-specific status fields (python names) from a successful run's result.
    result_fields: Callable[[StepResult], dict[str, Any]] = field(default=_no_fields)
    # Extra conditions (e.g. Evaluation's Passed) from a successful run's result.
    result_conditions: Callable[[StepResult], list[CondSpec]] = field(default=_no_conditions)
    # The stages of a run, each its own Job run in order (plan/stages.py), from the resource,
    # its output URI and the run id; empty: the run is one Job (what every kind does, and a
    # Dataset with parallelism 1).
    stages: Callable[[AnyResource, str, str], tuple[staging.Stage, ...]] = field(default=_one_stage)


def _job_ref(job: ObservedJob, namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job.name, "namespace": namespace},
    }


def _suspend_patch(
    job: ObservedJob, settings: RunSettings, namespace: str
) -> dict[str, Any] | None:
    """Flip spec.suspend of the run's Job to what the resource asks (Kueue owns unsuspending)."""
    if settings.suspend and not job.suspended:
        desired = True
    elif not settings.suspend and job.suspended and not settings.resources.queue_name:
        desired = False
    else:
        return None
    return {**_job_ref(job, namespace), "spec": {"suspend": desired}}


def _remembered(previous: CommonStatus, done_type: str) -> RunState:
    """The finished state recorded in status, for a run whose Job was already cleaned up."""
    done = next((c for c in previous.conditions if c.type == done_type), None)
    phase: Phase = "Failed" if previous.phase == "Failed" else "Succeeded"
    return RunState(
        phase,
        done.reason if done is not None else "Completed",
        previous.message or "",
        warning=phase == "Failed",
        start_time=previous.start_time,
        completion_time=previous.completion_time,
    )


def _new_run_state(settings: RunSettings, job: str) -> RunState:
    if settings.suspend:
        return RunState("Suspended", "Suspended", f"the run is suspended (Job {job})")
    queue = settings.resources.queue_name
    if queue:
        return RunState("Pending", "Queued", f"Job {job} waits for admission by queue {queue}")
    return RunState("Pending", "Starting", f"creating Job {job}")


@dataclass(frozen=True)
class _CurrentRun:
    """The run a pass plans: its id and hash, its stages and their Jobs, what status kept."""

    resource: AnyResource
    settings: RunSettings
    digest: str
    run_id: str
    output_uri: str
    stages: tuple[staging.Stage, ...]
    run_jobs: tuple[ObservedJob, ...]
    names: list[str]
    # The current stage (0 when the run is one Job) and its Job, if any.
    at: int
    job: ObservedJob | None
    # The stored status when it is of this run.
    same_run: CommonStatus | None

    def context(self, world: ObservedWorld, config: OperatorConfig) -> RunContext:
        return RunContext(self.resource, world, config, self.run_id, self.output_uri)


def plan_step(
    resource: AnyResource, world: ObservedWorld, config: OperatorConfig, kind: KindPlanner
) -> Plan:
    """Plan one runnable resource."""
    done_type = KIND_INFO[resource.kind].done_condition
    run = _current_run(resource, world, config, kind)
    plan = Plan(
        deletions=[
            _job_ref(j, resource.namespace)
            for j in world.jobs
            if j.run_id != run.run_id and not runs.job_finished(j)
        ]
    )
    state, waiting = _run_state(run, plan, world, config, kind)
    if done_type == "Ready" and state.phase == "Succeeded":
        state = RunState(
            "Ready",
            state.reason,
            state.message,
            result=state.result,
            start_time=state.start_time,
            completion_time=state.completion_time,
        )
    plan.status = _run_status(run, state, waiting, world, config, kind)
    plan.events = transition_events(resource.status, run.run_id, state, done_type)
    plan.events.extend(_result_events(resource, resource.status, run.run_id, state))
    if state.phase in ("Running", "Pending"):
        plan.requeue_after = config.progress_interval_seconds
    elif state.phase == "Waiting":
        plan.requeue_after = config.dependency_recheck_seconds
    return plan


def _current_run(
    resource: AnyResource, world: ObservedWorld, config: OperatorConfig, kind: KindPlanner
) -> _CurrentRun:
    """Pick the current run (one per generation; a suspend-only change keeps the run)."""
    settings = resource.spec
    assert isinstance(settings, RunSettings)
    previous = resource.status
    digest = runs.run_hash(resource, world)
    run_id = runs.current_run_id(resource, world.jobs, digest, previous)
    out = runs.output_uri(resource, run_id, config)
    stages = kind.stages(resource, out, run_id)
    run_jobs = tuple(j for j in world.jobs if j.run_id == run_id)
    names = staging.job_names(stages, resource.name, kind.step, run_id)
    at, job = (
        staging.current(stages, run_jobs, names) if stages else (0, next(iter(run_jobs), None))
    )
    same_run = previous if previous is not None and previous.run_id == run_id else None
    return _CurrentRun(
        resource, settings, digest, run_id, out, stages, run_jobs, names, at, job, same_run
    )


def _run_state(
    run: _CurrentRun, plan: Plan, world: ObservedWorld, config: OperatorConfig, kind: KindPlanner
) -> tuple[RunState, CondSpec | None]:
    """The run's state (and a Waiting condition): from its Job; remembered, its Job gone after
    it finished; refused (image not allowed); or starting, its children added to ``plan``."""
    if run.job is not None:
        return _observed_state(run, run.job, plan, world, config, kind)
    if run.same_run is not None and run.same_run.phase in runs.TERMINAL_PHASES:
        return _remembered(run.same_run, KIND_INFO[run.resource.kind].done_condition), None
    image = run.settings.image
    if image and not config.image_allowed(image):
        return _image_refused(image, config, world.now), None
    ctx = run.context(world, config)
    built = kind.build(ctx)
    if isinstance(built, Wait):
        return _waiting(built)
    request = _stage_request(ctx, kind, run.digest, built, run.stages[0] if run.stages else None)
    plan.children = build_children(request, config)
    return _new_run_state(run.settings, request.job_name), None


def _observed_state(
    run: _CurrentRun,
    job: ObservedJob,
    plan: Plan,
    world: ObservedWorld,
    config: OperatorConfig,
    kind: KindPlanner,
) -> tuple[RunState, CondSpec | None]:
    """The state of a run whose (current stage's) Job exists; patch ``spec.suspend`` when the
    resource asks for it, create the next stage's Job when a stage succeeded."""
    stages, at = run.stages, run.at
    job_settings = staging.stage_settings(run.settings, stages[at]) if stages else run.settings
    state = job_state(job, job_settings, world.progress)
    patch = None if state.terminal else _suspend_patch(job, run.settings, run.resource.namespace)
    if patch is not None:
        plan.patches.append(patch)
    if not stages:
        return state, None
    state = staging.stage_state(state, stages, at, job, run.run_jobs)
    if state.phase == "Succeeded" and at + 1 < len(stages):
        return _next_stage(plan, run.context(world, config), kind, run.digest, stages, at, state)
    return state, None


def _image_refused(image: str, config: OperatorConfig, now: datetime) -> RunState:
    """A run whose spec.image is outside the operator's allowlist: Failed, nothing runs."""
    allowed = ", ".join(config.allowed_images or (config.cpu_image, config.cuda_image))
    return RunState(
        "Failed",
        IMAGE_NOT_ALLOWED,
        f"spec.image {image!r} is not allowed by the operator "
        f"(allowed: {allowed}); ask the platform team to add it to the chart's "
        "workloadImages.allowed (--allowed-image)",
        warning=True,
        completion_time=now,
    )


def _waiting(built: Wait) -> tuple[RunState, CondSpec]:
    """The state and condition of a run waiting for what its step spec needs."""
    waiting = CondSpec("Waiting", "True", built.reason, built.message)
    return RunState("Waiting", built.reason, built.message, warning=built.failed), waiting


def _run_status(
    run: _CurrentRun,
    state: RunState,
    waiting: CondSpec | None,
    world: ObservedWorld,
    config: OperatorConfig,
    kind: KindPlanner,
) -> dict[str, Any]:
    """The whole status (wire format): phase, conditions, results, history, usage."""
    resource, same_run, run_id = run.resource, run.same_run, run.run_id
    info = KIND_INFO[resource.kind]
    done_type = info.done_condition
    fields, extra_conds = _outcome(state, same_run, kind, run_id, world, config, resource)
    if run.stages:
        fields["stages"] = (
            staging.statuses(run.stages, run.run_jobs, run.names, run.settings, world.progress)
            if run.run_jobs or not state.terminal
            else getattr(same_run, "stages", None)
        )
    specs = run_conditions(done_type, state, waiting) + extra_conds
    previous = resource.status
    prior = previous.conditions if previous is not None else []
    status = info.status_model.model_validate(
        {
            **fields,
            "phase": state.phase,
            "conditions": conditions(prior, specs, resource.generation, world.now),
            "observed_generation": resource.generation,
            "run_id": run_id,
            "run_hash": run.digest,
            "start_time": state.start_time or (same_run.start_time if same_run else None),
            "completion_time": state.completion_time if state.terminal else None,
            "message": state.message,
            "history": runs.history(
                previous, run_id, world.now, world.jobs, config.history_limit, done_type
            ),
            "usage": _usage_field(run, config, kind.step, world.now),
        }
    )
    return wire_status(status)


def _usage_field(
    run: _CurrentRun, config: OperatorConfig, step: str, now: datetime
) -> Usage | None:
    """The run's usage from its Jobs, else what status recorded of it."""
    if run.job is None:
        return run.same_run.usage if run.same_run is not None else None
    return run_usage(run.run_jobs if run.stages else (run.job,), run.settings, config, step, now)


def _stage_request(
    ctx: RunContext, kind: KindPlanner, digest: str, built: Built, stage: staging.Stage | None
) -> JobRequest:
    """The Job request of a run, or of one stage of a staged run."""
    resource = ctx.resource
    settings = resource.spec
    assert isinstance(settings, RunSettings)
    if stage is None:
        return JobRequest(resource, settings, kind.step, ctx.run_id, digest, built.spec, built.env)
    return JobRequest(
        resource,
        settings,
        kind.step,
        ctx.run_id,
        digest,
        built.spec,
        (*built.env, *stage.env),
        stage=stage.name,
        completions=stage.completions,
    )


def _next_stage(
    plan: Plan,
    ctx: RunContext,
    kind: KindPlanner,
    digest: str,
    stages: tuple[staging.Stage, ...],
    at: int,
    state: RunState,
) -> tuple[RunState, CondSpec | None]:
    """Stage ``at`` succeeded: create the next stage's Job (same step spec)."""
    built = kind.build(ctx)
    if isinstance(built, Wait):
        return _waiting(built)
    request = _stage_request(ctx, kind, digest, built, stages[at + 1])
    plan.children = build_children(request, ctx.config)
    return staging.advancing(state, stages, at, request.job_name), None


def run_usage(
    jobs: tuple[ObservedJob, ...],
    settings: RunSettings,
    config: OperatorConfig,
    step: str,
    now: datetime,
) -> Usage:
    """The usage of a run's Jobs (one, or one per stage), summed."""
    parts = [usage(job, settings, config, step, now) for job in jobs]
    if len(parts) == 1:
        return parts[0]
    return parts[0].model_copy(
        update={
            "gpu_seconds": round(sum(p.gpu_seconds for p in parts), 1),
            "cpu_seconds": round(sum(p.cpu_seconds for p in parts), 1),
        }
    )


def usage(
    job: ObservedJob, settings: RunSettings, config: OperatorConfig, step: str, now: datetime
) -> Usage:
    """GPU- and CPU-seconds of a run: requested GPUs and CPUs per pod x the wall time of each
    of its pods (from its start to the Job's completion, or now; whole minutes while it runs,
    so a running status is not rewritten at every progress poll)."""
    res = settings.resources
    end = job.completion_time or now
    seconds = sum(
        max((end - pod.start_time).total_seconds(), 0.0) for pod in job.pods if pod.start_time
    )
    if not seconds and job.start_time is not None and job.pods:
        seconds = max((end - job.start_time).total_seconds(), 0.0) * res.nodes
    if job.completion_time is None:
        seconds = seconds // 60 * 60
    cpu = res.cpu or config.requests_for(step, res.gpus)[0]
    cores = to_cores(cpu) if cpu else 0.0
    return Usage(
        gpu_seconds=round(res.gpus * seconds, 1),
        cpu_seconds=round(cores * seconds, 1),
        gpus=res.gpus * res.nodes,
        queue=res.queue_name,
    )


def _outcome(
    state: RunState,
    same_run: CommonStatus | None,
    kind: KindPlanner,
    run_id: str,
    world: ObservedWorld,
    config: OperatorConfig,
    resource: AnyResource,
) -> tuple[dict[str, Any], list[CondSpec]]:
    """Result fields and extra conditions: from the result, remembered, or reset."""
    fields: dict[str, Any] = {}
    extra: list[CondSpec] = []
    status_fields = KIND_INFO[resource.kind].status_model.model_fields
    result = state.result
    if state.phase in ("Succeeded", "Ready") and result is not None:
        fields.update(
            output_uri=result.output_uri or runs.output_uri(resource, run_id, config),
            artifact_hash=result.content_hash,
            results=dict(result.metrics) or None,
        )
        fields.update(kind.result_fields(result))
        extra = kind.result_conditions(result)
    elif state.phase in ("Succeeded", "Ready"):
        fields["output_uri"] = runs.output_uri(resource, run_id, config)
    if state.terminal and same_run is not None and result is None:
        # A finished run whose Job is gone: keep what its status recorded.
        kept = same_run.model_dump(exclude=set(COMMON_FIELDS) - {"output_uri", "artifact_hash"})
        kept["results"] = same_run.results
        fields.update({k: v for k, v in kept.items() if v is not None})
        base = {"Ready", "Succeeded", "Waiting", "Running", "Reconciling", "Stalled"}
        extra = [
            CondSpec(c.type, c.status, c.reason, c.message)
            for c in same_run.conditions
            if c.type not in base
        ]
    if "progress" in status_fields:
        fields["progress"] = _progress(state, same_run, world)
    return fields, extra


def _progress(
    state: RunState, same_run: CommonStatus | None, world: ObservedWorld
) -> Progress | None:
    if state.phase == "Running" and world.progress is not None:
        data = world.progress.model_dump(exclude={"phase", "message"})
        return Progress.model_validate(data)
    kept = getattr(same_run, "progress", None)
    return kept if isinstance(kept, Progress) else None


def _result_events(
    resource: AnyResource, previous: CommonStatus | None, run_id: str, state: RunState
) -> list[Event]:
    """A Warning when a finished run's gates failed (once, on the transition)."""
    result = state.result
    if result is None or result.passed is not False:
        return []
    if previous is not None and previous.run_id == run_id and previous.phase == state.phase:
        return []
    gates = ", ".join(result.failed_gates or []) or "unknown"
    return [Event("Warning", "GatesFailed", f"{resource.kind} gates failed: {gates}")]
