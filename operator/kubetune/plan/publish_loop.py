"""A FeedbackLoop's ``promotion.publish``: move ``champion`` to the promoted challenger. Pure.

Each cycle's challenger (its Compression, else its FinetuneJob) is created with the promotion's
MLflow/OCI/Hub targets as ``spec.publish`` and the alias ``challenger``
(:func:`kubetune.plan.feedback.children.challenger_publish`), so it is published, and tagged
``challenger``, while the cycle evaluates it. When a cycle is promoted, the loop creates one
``publish`` Job in mode ``promote`` (``{loop}-publish-p{N}``) once the challenger's versions are
published: it points the MLflow alias and the OCI tag ``champion`` at them (and clears
``challenger`` from them), and adds the evaluation's scores as version tags. The loop's
``status.publish[]`` and condition ``ChampionPublished`` are recomputed from that Job.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from kubetune.api.common import condition
from kubetune.api.feedback import FeedbackLoopStatus
from kubetune.api.publish import PublishSpec, PublishTargetStatus
from kubetune.api.resources import AnyResource, FeedbackLoop
from kubetune.api.steps import (
    InputArtifact,
    PromoteRequest,
    PublishLineage,
    PublishStepSpec,
)
from kubetune.plan import runs
from kubetune.plan.feedback.children import CYCLE_LABEL, challenger_in, cycle_id
from kubetune.plan.jobs import JobRequest, build_children
from kubetune.plan.publish import (
    STEP,
    add_run_publish,
    entries_of,
    is_publish_job,
    job_outcome,
    publish_settings,
    remembered_publish,
    secret_envs,
    set_condition,
    target_names,
)
from kubetune.plan.status import CondSpec
from kubetune.plan.world import Event, ObservedWorld, OperatorConfig, Plan

LOOP_CONDITION = "ChampionPublished"
CHAMPION_ALIAS = "champion"


def promote_run_id(cycle: int) -> str:
    """``p<N>``: the run id of the Job moving ``champion`` to cycle N's challenger."""
    return f"p{cycle}"


def _challenger(loop: FeedbackLoop, world: ObservedWorld, cycle: int) -> AnyResource | None:
    owned = sorted(world.owned.items())
    return challenger_in(
        loop, [r for _, r in owned if r.metadata.labels.get(CYCLE_LABEL) == str(cycle)]
    )


def _scores(status: dict[str, Any], cycle: int) -> dict[str, str]:
    """The cycle's evaluation scores (its history record) as MLflow version tags."""
    record = next(
        (r for r in status.get("history") or [] if r.get("runId") == cycle_id(cycle)), None
    )
    results = (record or {}).get("results") or {}
    return {f"kubetune.evaluation.{k}": f"{float(v):.6g}" for k, v in sorted(results.items())}


def promote_job(
    loop: FeedbackLoop,
    config: OperatorConfig,
    targets: PublishSpec,
    cycle: int,
    published: dict[str, PublishTargetStatus],
    status: dict[str, Any],
) -> list[dict[str, Any]]:
    """The Job moving ``champion`` to the versions cycle N's challenger was published as."""
    run_id = promote_run_id(cycle)
    champion = str(status.get("champion") or "")
    step = PublishStepSpec(
        producer=runs.producer(loop, run_id),
        output_uri=champion,
        mode="promote",
        publish=targets,
        artifact=InputArtifact(uri=champion, role="model"),
        version=published["mlflow"].version if "mlflow" in published else run_id,
        lineage=PublishLineage(resource=f"{loop.kind}/{loop.namespace}/{loop.name}", run_id=run_id),
        promote=PromoteRequest(
            alias=CHAMPION_ALIAS,
            mlflow_version=published["mlflow"].version if "mlflow" in published else None,
            oci_digest=published["oci"].digest if "oci" in published else None,
            tags=_scores(status, cycle),
        ),
    )
    settings = publish_settings(loop.spec.finetune, loop.spec.finetune.credentials)
    request = JobRequest(loop, settings, STEP, run_id, runs.spec_hash(loop), step,
                         secret_envs(targets))  # fmt: skip
    return build_children(request, config)


def _promote_targets(loop: FeedbackLoop) -> PublishSpec | None:
    """The promotion's targets that have a champion alias: MLflow and OCI."""
    publish = loop.spec.promotion.publish
    if publish is None or (publish.mlflow is None and publish.oci is None):
        return None
    return PublishSpec(mlflow=publish.mlflow, oci=publish.oci)


def _challenger_versions(
    loop: FeedbackLoop, world: ObservedWorld, cycle: int, targets: PublishSpec
) -> dict[str, PublishTargetStatus] | CondSpec:
    """The published versions of cycle N's challenger, or why there are none (yet)."""
    challenger = _challenger(loop, world, cycle)
    status = challenger.status if challenger is not None else None
    entries = {e.target: e for e in getattr(status, "publish", None) or []}
    wanted = target_names(targets)
    failed = [e for t, e in entries.items() if t in wanted and e.phase == "Failed"]
    if failed:
        why = "; ".join(f"{e.target}: {e.message}" for e in failed)
        return CondSpec(LOOP_CONDITION, "False", "ChallengerNotPublished", why)
    if not all(t in entries and entries[t].phase == "Published" for t in wanted):
        message = f"waiting for cycle {cycle_id(cycle)}'s challenger to be published"
        return CondSpec(LOOP_CONDITION, "Unknown", "WaitingForChallenger", message)
    return {t: entries[t] for t in wanted}


def _of_cycle(loop: FeedbackLoop, cycle: int) -> FeedbackLoopStatus | None:
    """The loop's stored status when its champion is cycle N's (its promotion's publish)."""
    previous = loop.status
    return previous if previous is not None and previous.champion_cycle == cycle else None


def add_loop_publish(
    loop: FeedbackLoop, world: ObservedWorld, config: OperatorConfig, plan: Plan
) -> Plan:
    """Move ``champion`` (MLflow alias, OCI tag) to the promoted challenger: one promote Job per
    promoted cycle, created once its challenger's versions are published."""
    targets = _promote_targets(loop)
    cycle = plan.status.get("championCycle")
    jobs = [j for j in world.jobs if is_publish_job(j)]
    current = promote_run_id(cycle) if isinstance(cycle, int) else None
    for old in jobs:
        if old.run_id != current and runs.job_finished(old):
            meta = {"name": old.name, "namespace": loop.namespace}
            plan.deletions.append({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta})
    if targets is None or not isinstance(cycle, int):
        return plan
    job = next((j for j in jobs if j.run_id == current), None)
    names = target_names(targets)
    if job is not None:
        settings = publish_settings(loop.spec.finetune, None)
        entries, cond, state = job_outcome(job, targets, settings)
        cond = replace(cond, type=LOOP_CONDITION)
        if not state.terminal:
            plan.requeue_after = min(plan.requeue_after or 1e9, config.progress_interval_seconds)
    elif (kept := remembered_publish(_of_cycle(loop, cycle), LOOP_CONDITION)) is not None:
        entries, cond = kept
    else:
        found = _challenger_versions(loop, world, cycle, targets)
        if isinstance(found, CondSpec):
            cond = found
            phase = "Failed" if found.status == "False" else "Pending"
            entries = entries_of(targets, phase, found.message)
            if found.status == "Unknown":
                wake = config.progress_interval_seconds
                plan.requeue_after = min(plan.requeue_after or wake, wake)
        else:
            plan.children += promote_job(loop, config, targets, cycle, found, plan.status)
            message = f"moving {CHAMPION_ALIAS} to cycle {cycle_id(cycle)}'s challenger"
            entries = entries_of(targets, "Publishing", message)
            cond = CondSpec(LOOP_CONDITION, "Unknown", "Publishing", message)
    others = [e for e in plan.status.get("publish") or [] if e.get("target") not in names]
    plan.status["publish"] = others + [
        e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in entries
    ]
    set_condition(loop, plan, cond, world.now)
    plan.events += _loop_events(loop, cycle, cond)
    return plan


def _loop_events(loop: FeedbackLoop, cycle: int, cond: CondSpec) -> list[Event]:
    previous = loop.status
    before = condition(previous.conditions, LOOP_CONDITION) if previous is not None else None
    same_cycle = previous is not None and previous.champion_cycle == cycle
    was = (before.status, before.reason) if before is not None and same_cycle else None
    if cond.status == "Unknown" or was == (cond.status, cond.reason):
        return []
    if cond.status == "True":
        return [Event("Normal", "ChampionPublished", cond.message)]
    return [Event("Warning", "ChampionNotPublished", f"{cond.reason}: {cond.message}")]


def add_publish(
    resource: AnyResource, world: ObservedWorld, config: OperatorConfig, plan: Plan
) -> Plan:
    """Any kind's plan plus its publishing (FinetuneJob, Compression, FeedbackLoop)."""
    if isinstance(resource, FeedbackLoop):
        return add_loop_publish(resource, world, config, plan)
    return add_run_publish(resource, world, config, plan)
