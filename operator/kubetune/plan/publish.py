"""``spec.publish``: the ``publish`` Job that runs once a run's artifact is complete. Pure.

A FinetuneJob or Compression whose ``spec.publish`` names MLflow, OCI or Hugging Face targets
gets, when its run has Succeeded, one more Job for the same run: ``{name}-publish-{run}``
(step ``publish``; its step spec names the artifact by URI and content hash, the version
``{name}-{run}``, the lineage and the scores; the targets' Secrets as ``secretKeyRef`` env).
The main planner never sees that Job (:func:`without_publish_jobs`): the artifact's run is
unaffected, and dependents go on as soon as the artifact is complete.

``status.publish[]`` (one entry per target) and the condition ``Published`` are recomputed on
every pass from the publish Job's result (Pending before the artifact exists, Publishing while
the Job runs, Published or Failed after; a finished Job gone by its TTL: what status
recorded). KServe (``spec.publish.kserve``) is planned by :mod:`kubetune.plan.serving`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

from kubetune.api.common import (
    CommonStatus,
    Credentials,
    Resources,
    RetryPolicy,
    RunSettings,
    SecretRef,
    condition,
)
from kubetune.api.publish import (
    HF_PUBLISH_TOKEN_ENV,
    MLFLOW_PASSWORD_ENV,
    MLFLOW_TOKEN_ENV,
    MLFLOW_USERNAME_ENV,
    OCI_PASSWORD_ENV,
    OCI_USERNAME_ENV,
    PublishSpec,
    PublishTargetStatus,
)
from kubetune.api.resources import AnyResource, Compression, FinetuneJob
from kubetune.api.steps import (
    InputArtifact,
    PublishLineage,
    PublishStepSpec,
    StepResult,
    parse_step_result,
)
from kubetune.plan import naming, runs
from kubetune.plan.jobs import JobRequest, build_children, secret_env
from kubetune.plan.state import RunState, job_state
from kubetune.plan.status import CondSpec, conditions
from kubetune.plan.world import Event, ObservedJob, ObservedWorld, OperatorConfig, Plan

STEP: Literal["publish"] = "publish"
CONDITION = "Published"
PUBLISH_RESOURCES = Resources(cpu="500m", memory="2Gi")
PUBLISH_DEADLINE_SECONDS = 3600
TARGETS = ("mlflow", "oci", "huggingface")


def is_publish_job(job: ObservedJob) -> bool:
    """A publish Job (named ``...-publish-{run}``: the step suffix is never cut)."""
    return job.name.endswith(f"-{STEP}-{job.run_id}")


def without_publish_jobs(world: ObservedWorld) -> ObservedWorld:
    """The world as the artifact's own planner sees it."""
    return replace(world, jobs=tuple(j for j in world.jobs if not is_publish_job(j)))


def registry_targets(publish: PublishSpec | None) -> PublishSpec | None:
    """The MLflow/OCI/Hub part of ``publish`` (None when it names none of them)."""
    if publish is None or not any(getattr(publish, t) is not None for t in TARGETS):
        return None
    return PublishSpec(
        mlflow=publish.mlflow,
        oci=publish.oci,
        huggingface=publish.huggingface,
        aliases=publish.aliases,
    )


def _reference(publish: PublishSpec, target: str) -> str:
    if target == "mlflow" and publish.mlflow is not None:
        return publish.mlflow.model_name
    if target == "oci" and publish.oci is not None:
        return publish.oci.reference
    assert publish.huggingface is not None
    return publish.huggingface.repo


def target_names(publish: PublishSpec) -> list[str]:
    return [t for t in TARGETS if getattr(publish, t) is not None]


def secret_envs(publish: PublishSpec) -> tuple[dict[str, Any], ...]:
    """Every target's Secrets as ``secretKeyRef`` env, under the names the step reads."""
    pairs: list[tuple[str, SecretRef | None]] = []
    if publish.mlflow is not None and publish.mlflow.credentials is not None:
        creds = publish.mlflow.credentials
        pairs += [
            (MLFLOW_USERNAME_ENV, creds.username),
            (MLFLOW_PASSWORD_ENV, creds.password),
            (MLFLOW_TOKEN_ENV, creds.token),
        ]
    if publish.oci is not None and publish.oci.credentials is not None:
        pairs += [
            (OCI_USERNAME_ENV, publish.oci.credentials.username),
            (OCI_PASSWORD_ENV, publish.oci.credentials.password),
        ]
    if publish.huggingface is not None:
        pairs.append((HF_PUBLISH_TOKEN_ENV, publish.huggingface.token))
    return tuple(secret_env(name, ref) for name, ref in pairs if ref is not None)


def publish_settings(settings: RunSettings, credentials: Credentials | None) -> RunSettings:
    """A publish Job's placement: CPU only, the resource's node placement and storage secrets."""
    resources = PUBLISH_RESOURCES.model_copy(
        update={
            "node_selector": settings.resources.node_selector,
            "tolerations": settings.resources.tolerations,
            "priority_class_name": settings.resources.priority_class_name,
        }
    )
    return RunSettings(
        resources=resources,
        credentials=credentials,
        active_deadline_seconds=PUBLISH_DEADLINE_SECONDS,
        retry=RetryPolicy(backoff_limit=2),
        image=settings.image,
    )


def version_of(resource: AnyResource, run_id: str) -> str:
    """``{name}-{run}``: the version name of a run's model (an OCI tag, an MLflow tag)."""
    return naming.label_value(f"{resource.name}-{run_id}")


def lineage(resource: FinetuneJob | Compression, world: ObservedWorld, run_id: str,
            metrics: dict[str, float]) -> PublishLineage:  # fmt: skip
    """Where the run's model came from, from its spec and the resources it read."""
    found: dict[str, Any] = {
        "resource": f"{resource.kind}/{resource.namespace}/{resource.name}",
        "run_id": run_id,
        "metrics": metrics,
    }
    if isinstance(resource, FinetuneJob):
        model = resource.spec.model
        found["base_model"] = _model_uri(model.base.uri if model.base else None, model.from_,
                                         world)  # fmt: skip
        dataset = resource.spec.dataset
        if dataset.uri is not None:
            found["dataset"] = dataset.uri
        elif dataset.name is not None:
            other = world.resources.get(("Dataset", dataset.name))
            status = other.status if other is not None else None
            found["dataset"] = status.output_uri if status is not None else None
            found["dataset_version"] = getattr(status, "version", None)
    else:
        found["source_model"] = _model_uri(None, resource.spec.model, world)
    return PublishLineage.model_validate(found)


def _model_uri(direct: str | None, ref: Any, world: ObservedWorld) -> str | None:
    if direct is not None or ref is None:
        return direct
    if ref.uri is not None:
        return str(ref.uri)
    other = world.resources.get((ref.kind, ref.name))
    status = other.status if other is not None else None
    return status.output_uri if status is not None else None


def publish_job(
    resource: FinetuneJob | Compression,
    world: ObservedWorld,
    config: OperatorConfig,
    targets: PublishSpec,
    status: dict[str, Any],
) -> list[dict[str, Any]]:
    """The ConfigMap and Job publishing the run's finished artifact (status in wire format)."""
    run_id = str(status["runId"])
    uri = str(status["outputUri"])
    step = PublishStepSpec(
        producer=runs.producer(resource, run_id),
        output_uri=uri,
        publish=targets,
        artifact=InputArtifact(uri=uri, content_hash=status.get("artifactHash"), role="model"),
        version=version_of(resource, run_id),
        lineage=lineage(resource, world, run_id, dict(status.get("results") or {})),
    )
    settings = publish_settings(resource.spec, resource.spec.credentials)
    request = JobRequest(
        resource, settings, STEP, run_id, str(status.get("runHash") or ""), step,
        secret_envs(targets),
    )  # fmt: skip
    return build_children(request, config)


def entries_of(targets: PublishSpec, phase: str, message: str) -> list[PublishTargetStatus]:
    return [
        PublishTargetStatus.model_validate(
            {"target": t, "phase": phase, "reference": _reference(targets, t), "message": message}
        )
        for t in target_names(targets)
    ]


def _reported(result: StepResult | None) -> list[PublishTargetStatus] | None:
    details = (result.details or {}) if result is not None else {}
    found = details.get("publish")
    if not isinstance(found, list):
        return None
    return [PublishTargetStatus.model_validate(entry) for entry in found]


def _failed_result(job: ObservedJob) -> StepResult | None:
    for pod in reversed(job.pods):
        result = parse_step_result(pod.termination_message or "")
        if result is not None:
            return result
    return None


def job_outcome(
    job: ObservedJob, targets: PublishSpec, settings: RunSettings
) -> tuple[list[PublishTargetStatus], CondSpec, RunState]:
    """Each target's status and the Published condition, from the publish Job."""
    state = job_state(job, settings, None)
    if state.phase == "Succeeded":
        entries = _reported(state.result) or entries_of(targets, "Published", state.message)
        return entries, CondSpec(CONDITION, "True", "Published", state.message), state
    if state.phase == "Failed":
        entries = _reported(_failed_result(job)) or entries_of(targets, "Failed", state.message)
        return entries, CondSpec(CONDITION, "False", state.reason, state.message), state
    message = f"publish Job {job.name}: {state.message}"
    return (
        entries_of(targets, "Publishing", message),
        CondSpec(CONDITION, "Unknown", "Publishing", message),
        state,
    )


def remembered_publish(
    status: CommonStatus | None, condition_type: str
) -> tuple[list[PublishTargetStatus], CondSpec] | None:
    """What ``status`` recorded of a finished publish whose Job is gone (by its TTL): the
    registry targets' entries and the condition; None when it recorded no finished publish
    (``status`` None: the status is not of this run or promotion)."""
    if status is None:
        return None
    done = condition(status.conditions, condition_type)
    entries = [e for e in getattr(status, "publish", None) or [] if e.target in TARGETS]
    if done is None or done.status == "Unknown" or not entries:
        return None
    return entries, CondSpec(condition_type, done.status, done.reason, done.message)


def _events(resource: AnyResource, run_id: str, cond: CondSpec) -> list[Event]:
    """One event when the run's publish finishes (Published, or its failure reason)."""
    previous = resource.status
    before = condition(previous.conditions, CONDITION) if previous is not None else None
    same_run = previous is not None and previous.run_id == run_id
    if cond.status == "Unknown" or (
        same_run
        and before is not None
        and (before.status, before.reason) == (cond.status, cond.reason)
    ):
        return []
    if cond.status == "True":
        return [Event("Normal", "Published", cond.message)]
    return [Event("Warning", "PublishFailed", f"{cond.reason}: {cond.message}")]


def set_condition(resource: AnyResource, plan: Plan, cond: CondSpec, now: Any) -> None:
    previous = resource.status.conditions if resource.status is not None else []
    [made] = conditions(previous, [cond], resource.generation, now)
    wire = made.model_dump(mode="json", by_alias=True, exclude_none=True)
    others = [c for c in plan.status.get("conditions") or [] if c.get("type") != CONDITION]
    plan.status["conditions"] = [*others, wire]


def add_run_publish(
    resource: AnyResource, world: ObservedWorld, config: OperatorConfig, plan: Plan
) -> Plan:
    """A FinetuneJob's or Compression's plan, plus the publishing of its finished model."""
    if not isinstance(resource, FinetuneJob | Compression):
        return plan
    run_id = plan.status.get("runId")
    jobs = [j for j in world.jobs if is_publish_job(j)]
    for old in jobs:
        if old.run_id != run_id and not runs.job_finished(old):
            meta = {"name": old.name, "namespace": resource.namespace}
            plan.deletions.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta})
    targets = registry_targets(resource.spec.publish)
    if targets is None or run_id is None:
        return plan
    job = next((j for j in jobs if j.run_id == run_id), None)
    phase = plan.status.get("phase")
    if phase != "Succeeded":
        if phase == "Failed":
            plan.status["publish"] = None
            return plan
        entries = entries_of(targets, "Pending", "waiting for the run's artifact")
        cond = CondSpec(CONDITION, "Unknown", "WaitingForArtifact", "the run has not finished")
    elif job is not None:
        settings = publish_settings(resource.spec, resource.spec.credentials)
        entries, cond, state = job_outcome(job, targets, settings)
        if not state.terminal:
            wake = config.progress_interval_seconds
            plan.requeue_after = min(plan.requeue_after or wake, wake)
    else:
        previous = resource.status
        same_run = previous if previous is not None and previous.run_id == run_id else None
        kept = remembered_publish(same_run, CONDITION)
        if kept is not None:
            entries, cond = kept
        else:
            plan.children += publish_job(resource, world, config, targets, plan.status)
            name = naming.job_name(resource.name, STEP, str(run_id))
            entries = entries_of(targets, "Publishing", f"creating Job {name}")
            cond = CondSpec(CONDITION, "Unknown", "Publishing", f"creating Job {name}")
    plan.status["publish"] = [
        e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in entries
    ]
    set_condition(resource, plan, cond, world.now)
    plan.events += _events(resource, str(run_id), cond)
    return plan
