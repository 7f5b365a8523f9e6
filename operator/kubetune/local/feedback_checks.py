"""How `kubetune run` treats a FeedbackLoop's periodic checks: one look per run, no chains.

In a cluster a FeedbackLoop counts new feedback records (a ``feedback`` count Job) and, with a
drift trigger, re-scores its champion (a drift Evaluation) once every
``triggers.checkIntervalSeconds``, forever. A local run instead ends when nothing more can
happen, so each `kubetune run` is one look at the feedback:

- When a run starts, the loops' finished count Jobs are forgotten, so the planner counts the
  records again now, whatever the interval says: append records, rerun, and a cycle starts.
- Within one run, a loop gets at most one count per "records since cycle K" and one drift check
  per champion. Another one the planner asks for when its next time slot comes is not created:
  a check that takes longer than the interval would otherwise start the next one, and the run
  would never end. A new cycle or a new champion makes a new check due, so a cycle started in
  the run is still followed to its end and counted after.

A schedule that is not due is not waited for (the run's summary says when it would start), and
a run is done with a loop that is suspended with no cycle running, or whose running cycles all
await approval (:func:`loop_done`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetune.local.store import LocalState, StoredResource, resource_key
from kubetune.plan.feedback.children import DRIFT_LABEL, parse_count_id
from kubetune.plan.naming import LABEL_KIND, LABEL_RUN_ID, spec_config_map_name
from kubetune.plan.publish_loop import LOOP_CONDITION
from kubetune.schema.validation import is_kubetune

LOOP_KIND = "FeedbackLoop"
FINISHED = ("Succeeded", "Failed")


def _count_of(manifest: dict[str, Any]) -> tuple[int, int] | None:
    """(since cycle, slot) of a loop's count Job or its ConfigMap, else None."""
    labels = manifest["metadata"].get("labels") or {}
    if labels.get(LABEL_KIND) != LOOP_KIND:
        return None
    return parse_count_id(str(labels.get(LABEL_RUN_ID, "")))


def finished_count_jobs(state: LocalState) -> list[str]:
    """Names of the loops' count Jobs that ran to the end (to count again in a new run)."""
    names = []
    for child in state.children.values():
        if child["kind"] != "Job" or _count_of(child) is None:
            continue
        name = str(child["metadata"]["name"])
        execution = state.executions.get(name)
        if execution is not None and execution.state in FINISHED:
            names.append(name)
    return sorted(names)


def forget_finished_counts(state: LocalState) -> list[str]:
    """Remove the finished count Jobs, their executions and step-spec ConfigMaps."""
    names = finished_count_jobs(state)
    for name in names:
        state.children.pop(resource_key("Job", name), None)
        state.children.pop(resource_key("ConfigMap", spec_config_map_name(name)), None)
        state.executions.pop(name, None)
    return names


def loop_done(status: Mapping[str, Any]) -> bool | None:
    """Whether a local run is done with a loop: not when its champion's publish failed; yes
    when suspended with no cycle running, or when every running cycle awaits a person
    (`kubetune approve`); otherwise (None) its phase decides."""
    conditions = status.get("conditions") or []
    if any(c.get("type") == LOOP_CONDITION and c.get("status") == "False" for c in conditions):
        return False  # promotion.publish failed: the champion did not reach its registries
    if status.get("phase") == "Suspended":
        return not status.get("activeRuns")
    if status.get("awaitingApproval"):
        waiting = {a.get("runId") for a in status["awaitingApproval"]}
        return set(status.get("activeRuns") or []) <= waiting
    return None


class PeriodicChecks:
    """Lets through the first count per (loop, since cycle) and drift check per (loop, model)."""

    def __init__(self) -> None:
        self._first: dict[tuple[str, ...], str] = {}

    def allow(self, owner: StoredResource, child: dict[str, Any]) -> bool:
        """False for a periodic check beyond the first of its kind in this run."""
        if owner.kind != LOOP_KIND:
            return True
        found = self._identify(owner, child)
        if found is None:
            return True
        key, ident = found
        return self._first.setdefault(key, ident) == ident

    @staticmethod
    def _identify(
        owner: StoredResource, child: dict[str, Any]
    ) -> tuple[tuple[str, ...], str] | None:
        if is_kubetune(child):
            labels = child["metadata"].get("labels") or {}
            if child["kind"] != "Evaluation" or DRIFT_LABEL not in labels:
                return None
            candidate = (child.get("spec") or {}).get("candidate") or {}
            key = ("drift", owner.name, str(candidate.get("uri") or candidate))
            return key, str(child["metadata"]["name"])
        count = _count_of(child)
        if count is None:
            return None
        run_id = str(child["metadata"]["labels"][LABEL_RUN_ID])
        return ("count", owner.name, str(count[0])), run_id
