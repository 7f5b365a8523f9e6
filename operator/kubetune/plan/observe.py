"""Read Kubernetes Job and Pod objects (API JSON) into the planner's observed world.

Pure parsing, shared by the kopf controllers and tests: the shell lists a resource's Jobs (by
the ``kubetune.dev/name`` and ``kubetune.dev/kind`` labels) and their Pods, and passes the raw
objects here. A pod's last log line cannot be read from the object; the shell may add it with
``dataclasses.replace``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from kubetune.plan import naming
from kubetune.plan.jobs import CONTAINER
from kubetune.plan.world import ObservedJob, ObservedPod


def _time(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _container_status(status: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = status.get("containerStatuses") or []
    named = [s for s in statuses if s.get("name") == CONTAINER]
    first: Mapping[str, Any] = (named or statuses or [{}])[0]
    return first


def observe_pod(pod: Mapping[str, Any]) -> ObservedPod:
    """The facts of a Pod that the status needs."""
    status = pod.get("status") or {}
    container = _container_status(status)
    state = container.get("state") or {}
    terminated = state.get("terminated") or (container.get("lastState") or {}).get("terminated")
    waiting = state.get("waiting") or {}
    unschedulable = next(
        (
            c.get("message") or "the pod cannot be scheduled"
            for c in status.get("conditions") or []
            if c.get("type") == "PodScheduled"
            and c.get("status") == "False"
            and c.get("reason") == "Unschedulable"
        ),
        None,
    )
    return ObservedPod(
        name=str((pod.get("metadata") or {}).get("name", "")),
        phase=str(status.get("phase") or "Pending"),
        termination_message=terminated.get("message") if terminated else None,
        terminated_reason=terminated.get("reason") if terminated else None,
        exit_code=terminated.get("exitCode") if terminated else None,
        waiting_reason=waiting.get("reason"),
        waiting_message=waiting.get("message"),
        unschedulable_message=unschedulable,
        start_time=_time(status.get("startTime")),
    )


def observe_job(job: Mapping[str, Any], pods: Iterable[Mapping[str, Any]] = ()) -> ObservedJob:
    """A Job created for a run, with its Pods."""
    meta = job.get("metadata") or {}
    spec = job.get("spec") or {}
    status = job.get("status") or {}
    labels = meta.get("labels") or {}
    annotations = meta.get("annotations") or {}
    return ObservedJob(
        name=str(meta.get("name", "")),
        run_id=str(labels.get(naming.LABEL_RUN_ID, "")),
        active=int(status.get("active") or 0),
        succeeded=int(status.get("succeeded") or 0),
        failed=int(status.get("failed") or 0),
        suspended=bool(spec.get("suspend")),
        conditions=tuple(dict(c) for c in status.get("conditions") or []),
        start_time=_time(status.get("startTime")),
        completion_time=_time(status.get("completionTime")),
        pods=tuple(observe_pod(p) for p in pods),
        spec_hash=annotations.get(naming.ANNOTATION_SPEC_HASH),
    )
