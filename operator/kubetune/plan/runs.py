"""Runs of a resource: which run is current, where it writes, and the history of earlier runs.

One run per generation (``run_id = g<generation>``). A generation that changes only
``spec.suspend`` keeps the current run: the run's Job carries a hash of the spec without
``suspend`` (annotation ``kubetune.dev/spec-hash``) and a Job with the same hash is the same run.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime

from kubetune.api.common import CommonStatus, RunRecord
from kubetune.api.resources import AnyResource
from kubetune.plan.naming import generation_of_run, run_id_for
from kubetune.plan.world import ObservedJob, OperatorConfig

TERMINAL_PHASES = ("Succeeded", "Failed", "Ready")


def spec_hash(resource: AnyResource) -> str:
    """Hash of the spec fields that define a run (everything but ``suspend``)."""
    spec = resource.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    spec.pop("suspend", None)
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _run_generation(job: ObservedJob) -> int:
    return generation_of_run(job.run_id) or 0


def current_run_id(resource: AnyResource, jobs: tuple[ObservedJob, ...], digest: str) -> str:
    """The latest Job's run when it was built from the same spec, else a new run."""
    latest = max(jobs, key=_run_generation, default=None)
    if latest is not None and latest.spec_hash == digest:
        return latest.run_id
    return run_id_for(resource.generation)


def default_output_uri(resource: AnyResource, run_id: str, config: OperatorConfig) -> str:
    """``{store}/{namespace}/{kind}/{name}/{run_id}``."""
    store = config.artifact_store.rstrip("/")
    return f"{store}/{resource.namespace}/{resource.kind.lower()}/{resource.name}/{run_id}"


def output_uri(resource: AnyResource, run_id: str, config: OperatorConfig) -> str:
    """spec.output.uri when set, else the artifact store's default location."""
    output = getattr(resource.spec, "output", None)
    configured: str | None = getattr(output, "uri", None)
    return configured or default_output_uri(resource, run_id, config)


def job_finished(job: ObservedJob) -> bool:
    """Whether the Job reached Complete or Failed."""
    return any(
        c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
        for c in job.conditions
    )


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
