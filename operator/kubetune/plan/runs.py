"""Runs of a resource: which run is current, where it writes, and the history of earlier runs.

A run is defined by its **run hash**: the spec without ``suspend`` plus the artifacts of the
resources it depends on. The run's Job carries it (annotation ``kubetune.dev/spec-hash``) and
status records it (``status.runHash``). A Job or status with the same hash is the same run, so a
generation that changes only ``suspend`` keeps its run. A new generation starts run
``g<generation>``; when a dependency produces a new artifact (its FinetuneJob was retrained, its
Dataset re-prepared), the same generation runs again as ``g<generation>-<hash>``, so a
pipeline never reports results computed from stale inputs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from kubetune.api.common import CommonStatus, RunRecord, condition
from kubetune.api.kinds import KIND_INFO
from kubetune.api.resources import AnyResource
from kubetune.api.steps import Producer
from kubetune.plan.naming import generation_of_run, rerun_id_for, run_id_for
from kubetune.plan.refs import referenced_resources
from kubetune.plan.world import ObservedJob, ObservedWorld, OperatorConfig

TERMINAL_PHASES = ("Succeeded", "Failed", "Ready")
# The Job conditions that decide a run: success first, then failure (as plan.state reads them).
JOB_SUCCEEDED_CONDITIONS = ("Complete", "SuccessCriteriaMet")
JOB_FAILED_CONDITIONS = ("Failed", "FailureTarget")
JOB_FINISHED_CONDITIONS = JOB_SUCCEEDED_CONDITIONS + JOB_FAILED_CONDITIONS


def spec_hash(resource: AnyResource) -> str:
    """Hash of the spec fields that define a run (everything but ``suspend``)."""
    spec = resource.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    spec.pop("suspend", None)
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def producer(resource: AnyResource, run_id: str) -> Producer:
    """Who a run's step runs for: the resource (kind, name, namespace, uid, generation), the run."""
    meta = resource.metadata
    return Producer(
        kind=resource.kind,
        name=meta.name,
        namespace=meta.namespace,
        uid=meta.uid,
        generation=resource.generation,
        run_id=run_id,
    )


def dependency_state(resource: AnyResource, world: ObservedWorld) -> list[str]:
    """What this resource's inputs are right now: each dependency's artifact, or its absence."""
    states = []
    for kind, name in sorted(referenced_resources(resource)):
        other = world.resources.get((kind, name))
        status = other.status if other is not None else None
        done = condition(status.conditions, KIND_INFO[kind].done_condition) if status else None
        ready = (
            other is not None
            and status is not None
            and done is not None
            and done.status == "True"
            and status.observed_generation == other.generation
        )
        artifact = (status.artifact_hash or status.output_uri) if ready and status else None
        states.append(f"{kind}/{name}={artifact or 'not-ready'}")
    return states


def run_hash(resource: AnyResource, world: ObservedWorld) -> str:
    """Hash of the spec (but suspend) and the current artifacts of the dependencies."""
    canonical = json.dumps(
        {"spec": spec_hash(resource), "inputs": dependency_state(resource, world)},
        sort_keys=True,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _run_generation(job: ObservedJob) -> int:
    return generation_of_run(job.run_id) or 0


def current_run_id(
    resource: AnyResource, jobs: tuple[ObservedJob, ...], digest: str, previous: CommonStatus | None
) -> str:
    """The run with this hash (a Job's, or the status'), else a new run of the generation."""
    same = [j for j in jobs if j.spec_hash == digest]
    if same:
        return max(same, key=_run_generation).run_id
    if previous is not None and previous.run_hash == digest and previous.run_id:
        return previous.run_id
    fresh = run_id_for(resource.generation)
    # Runs known to differ: Jobs whose hash we can compare (a Job without the annotation, from
    # an older operator, counts as the generation's run), the previous run, earlier runs.
    used = {j.run_id for j in jobs if j.spec_hash is not None}
    used |= {r.run_id for r in (previous.history if previous else [])}
    ran = previous is not None and previous.phase not in (None, "Waiting")
    if previous is not None and previous.run_id and previous.run_hash is not None and ran:
        used.add(previous.run_id)
    return rerun_id_for(resource.generation, digest) if fresh in used else fresh


def default_output_uri(resource: AnyResource, run_id: str, config: OperatorConfig) -> str:
    """``{store}/{namespace}/{kind}/{name}/{run_id}``."""
    store = config.artifact_store.rstrip("/")
    return f"{store}/{resource.namespace}/{resource.kind.lower()}/{resource.name}/{run_id}"


def output_uri(resource: AnyResource, run_id: str, config: OperatorConfig) -> str:
    """spec.output.uri when set, else the artifact store's default location."""
    output = getattr(resource.spec, "output", None)
    configured: str | None = getattr(output, "uri", None)
    return configured or default_output_uri(resource, run_id, config)


def conditions_finished(conditions: Iterable[Mapping[str, Any]]) -> bool:
    """Whether a Job's ``status.conditions`` say its outcome is decided (it will not run again).

    The one definition for the planners and the controllers: SuccessCriteriaMet/FailureTarget
    (set first since Kubernetes 1.31, while the pods terminate) count as much as Complete/Failed.
    """
    return any(
        c.get("type") in JOB_FINISHED_CONDITIONS and c.get("status") == "True" for c in conditions
    )


def job_finished(job: ObservedJob) -> bool:
    """Whether an observed Job's outcome is decided (:func:`conditions_finished`)."""
    return conditions_finished(job.conditions)


def superseded_record(
    previous: CommonStatus, now: datetime, new_run_id: str, had_job: bool, done_type: str
) -> RunRecord | None:
    """The history entry of the previous run when a new run replaces it; None if it never ran."""
    if previous.run_id is None or (previous.phase in (None, "Waiting") and not had_job):
        return None
    done = next((c for c in previous.conditions if c.type == done_type), None)
    terminal = previous.phase in TERMINAL_PHASES
    return RunRecord(
        run_id=previous.run_id,
        generation=generation_of_run(previous.run_id),
        phase=previous.phase if terminal and previous.phase else "Failed",
        reason=(done.reason if done else None) if terminal else "Superseded",
        message=(previous.message if terminal else f"superseded by run {new_run_id}"),
        start_time=previous.start_time,
        completion_time=previous.completion_time if terminal else now,
        output_uri=previous.output_uri,
        results=previous.results,
    )


def history(
    previous: CommonStatus | None,
    run_id: str,
    now: datetime,
    jobs: tuple[ObservedJob, ...],
    limit: int,
    done_type: str,
) -> list[RunRecord]:
    """status.history for the current run: earlier runs, newest first, at most ``limit``."""
    if previous is None:
        return []
    records = list(previous.history)
    if previous.run_id is not None and previous.run_id != run_id:
        had_job = any(j.run_id == previous.run_id for j in jobs)
        record = superseded_record(previous, now, run_id, had_job, done_type)
        if record is not None:
            records.insert(0, record)
    seen: set[str] = set()
    unique: list[RunRecord] = []
    for record in records:
        if record.run_id != run_id and record.run_id not in seen:
            seen.add(record.run_id)
            unique.append(record)
    return unique[:limit]
