"""`kubetune run`: the operator's planners over an in-process store, Jobs as local processes.

One loop, level-based like the operator: for every resource, observe the world (other
resources, the resources it owns, its Jobs as local executions, live progress), call
:func:`kubetune.plan.plan`, apply the plan (:mod:`kubetune.local.applier`: children, owned
resources, deletions, patches), write the status it computes, record its events; then start
Jobs that have no process yet and poll the running ones. Every resource is planned on every
pass, so ``Plan.requeue_after`` needs no timer: the loop ends when a whole pass changes nothing
and nothing runs, without waiting for a FeedbackLoop's next check or schedule
(:mod:`kubetune.local.feedback_checks`). State is saved after every change, so a rerun resumes:
finished steps are not redone, and an interrupted step runs again (training resumes from its
latest checkpoint).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.api.contract import LABEL_KIND, LABEL_RUN_ID
from kubetune.api.kinds import KINDS, parse_resource
from kubetune.api.resources import AnyResource
from kubetune.api.steps import LiveProgress
from kubetune.local.applier import PlanApplier
from kubetune.local.executor import LocalExecutor, LocalPaths, observe, read_progress
from kubetune.local.kinds import ChildFilters, at_apply, local_kind
from kubetune.local.procs import alive, end_orphan
from kubetune.local.store import LocalStore, StoredResource, now, resource_key
from kubetune.plan import plan
from kubetune.plan.publish import CONDITION as PUBLISHED
from kubetune.plan.world import ObservedWorld, OperatorConfig

TERMINAL_OK = {"Ready", "Succeeded"}


@dataclass
class RunSummary:
    """How a local run ended."""

    workdir: Path
    resources: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    signal: int | None = None  # what interrupted the run (SIGINT or SIGTERM)
    # Objects outside the store that planners patched (recorded only): "Kind/name" -> merge.
    patched: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(is_done(r) for r in self.resources)

    @property
    def failed_gates(self) -> list[str]:
        """'Kind/name: gate, gate' for each of your resources whose verdict (``status.passed``,
        an Evaluation's) is a fail.

        Resources another one owns are left out: a FeedbackLoop's challenger that fails its
        cycle Evaluation's gates is a normal outcome of the loop (it is not promoted)."""
        found = []
        for body in self.resources:
            status = body.get("status") or {}
            owned = body["metadata"].get("ownerReferences")
            if status.get("passed") is False and not owned:
                gates = ", ".join(status.get("failedGates") or []) or "a gate"
                found.append(f"{body['kind']}/{body['metadata']['name']}: {gates}")
        return found

    @property
    def exit_code(self) -> int:
        """0 all done and passed; 1 a resource failed or could not finish; 3 every step
        finished but a gate failed; 130 stopped by SIGINT (Ctrl-C), 143 by SIGTERM."""
        if self.interrupted:
            return 143 if self.signal == signal.SIGTERM else 130
        if not self.ok:
            return EXIT_FAILED
        return EXIT_GATE_FAILED if self.failed_gates else 0


EXIT_FAILED = 1
EXIT_GATE_FAILED = 3


def interrupted_resources(store: LocalStore) -> dict[str, str]:
    """'Kind/name' -> message for resources whose status says Running but whose current run's
    process is not running any more (stopped by Ctrl-C or SIGTERM, or its runner was killed)."""
    found = {}
    for stored in store.state.resources.values():
        status = stored.body.get("status") or {}
        if status.get("phase") != "Running":
            continue
        for job in store.jobs_of(stored.kind, stored.name):
            if job["metadata"].get("labels", {}).get(LABEL_RUN_ID) != status.get("runId"):
                continue
            execution = store.state.executions.get(job["metadata"]["name"])
            if execution is None:
                continue  # not started yet
            live = execution.pid and alive(execution.pid, execution.pid_start, execution.host)
            if execution.state == "Running" and live:
                continue
            step = (status.get("progress") or {}).get("step")
            where = f" at step {step}" if step else ""
            found[stored.key_text] = (
                f"interrupted{where}: rerun `kubetune run` with this workdir to resume"
            )
    return found


def with_interruptions(
    bodies: list[dict[str, Any]], interrupted: dict[str, str]
) -> list[dict[str, Any]]:
    """Bodies to show: phase Interrupted (and why) where the run is not running any more."""
    shown = []
    for body in bodies:
        key = resource_key(body["kind"], body["metadata"]["name"])
        if key in interrupted:
            status = {**body["status"], "phase": "Interrupted", "message": interrupted[key]}
            body = {**body, "status": status}
        shown.append(body)
    return shown


def is_done(body: dict[str, Any]) -> bool:
    """Whether a run is done with a resource: not when its publish failed; else as its kind's
    done rule (:mod:`kubetune.local.kinds`) says, and by default when Ready or Succeeded."""
    status = body.get("status") or {}
    if any(
        c.get("type") == PUBLISHED and c.get("status") == "False"
        for c in status.get("conditions") or []
    ):
        return False  # spec.publish failed: the model did not reach its registries
    decided = local_kind(body["kind"]).done(status)
    return status.get("phase") in TERMINAL_OK if decided is None else decided


def local_config(workdir: Path) -> OperatorConfig:
    """Operator settings for local runs: artifacts under the workdir, no progress port."""
    return OperatorConfig(
        artifact_store=f"file://{(workdir / 'artifacts').resolve()}",
        allowed_images=("*",),  # no image runs locally: spec.image is ignored, never refused
    )


def rewrite_local_uris(value: Any, base: Path, workdir: Path, in_output: bool = False) -> Any:
    """Make a manifest runnable here without changing its meaning.

    Relative ``file://`` URIs resolve against the manifest's directory; an ``s3://`` output
    maps to ``file://`` under the workdir unless AWS credentials are configured.
    """
    if isinstance(value, dict):
        return {
            k: rewrite_local_uris(v, base, workdir, in_output or k == "output")
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [rewrite_local_uris(v, base, workdir, in_output) for v in value]
    if isinstance(value, str):
        if value.startswith("file://") and not value.startswith("file:///"):
            return "file://" + str((base / value[len("file://") :]).resolve())
        if in_output and value.startswith("s3://") and not os.environ.get("AWS_ACCESS_KEY_ID"):
            return "file://" + str((workdir / "s3" / value[len("s3://") :]).resolve())
    return value


def _parse(stored: StoredResource) -> AnyResource:
    return parse_resource(stored.body)


class ParsedResources:
    """Typed models of the stored resources, parsed again only when a body changed.

    Every pass plans each resource with a world holding all the others; parsing each body once
    per change instead of once per look keeps a pass cheap when a FeedbackLoop has made many
    resources. A body counts as changed when its spec, status or metadata object was replaced
    or its generation moved (the store replaces those objects; it never edits spec or status
    in place). The cache keeps the objects it compared, so their identities stay meaningful.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[str, str], tuple[tuple[Any, ...], AnyResource]] = {}

    def get(self, stored: StoredResource) -> AnyResource:
        body = stored.body
        meta = body["metadata"]
        seen = (body, body.get("spec"), body.get("status"), meta, meta.get("generation"))
        cached = self._cache.get(stored.key)
        if (
            cached is not None
            and all(a is b for a, b in zip(cached[0][:4], seen[:4], strict=True))
            and cached[0][4] == seen[4]
        ):
            return cached[1]
        parsed = _parse(stored)
        self._cache[stored.key] = (seen, parsed)
        return parsed

    def forget_missing(self, present: set[tuple[str, str]]) -> None:
        for key in set(self._cache) - present:
            del self._cache[key]


class LocalRunner:
    """Drives one workdir's resources to completion."""

    def __init__(
        self,
        workdir: Path,
        *,
        parallel: int = 1,
        on_change: Callable[[LocalRunner], None] | None = None,
        poll_seconds: float = 0.5,
    ) -> None:
        self.workdir = workdir.resolve()
        self.paths = LocalPaths(self.workdir)
        self.store = LocalStore(self.workdir)
        self.executor = LocalExecutor(self.paths)
        self.config = local_config(self.workdir)
        self.parallel = max(1, parallel)
        self.on_change = on_change
        self.poll_seconds = poll_seconds
        self.notes: list[str] = []
        self.applier = PlanApplier(self.store, self.executor.stop)
        self.parsed = ParsedResources()
        self.child_filters = ChildFilters()
        self.orphan_grace = 60.0

    # --- setup -------------------------------------------------------------------------------

    def apply(self, docs: list[tuple[str, dict[str, Any]]]) -> dict[str, str]:
        """Apply manifests to the store; returns 'Kind/name' -> created|configured|unchanged
        (configured also when a kind's step before the run started a new generation, e.g. a
        Dataset whose local input files changed)."""
        outcome = {}
        for source, doc in docs:
            file = Path(source.split("#", 1)[0])
            base = file.resolve().parent if file.is_file() else Path.cwd()
            doc = rewrite_local_uris(doc, base, self.workdir)
            outcome[resource_key(doc["kind"], doc["metadata"]["name"])] = self.store.apply(
                doc, source
            )
        self._forget_interrupted()
        before = self._generations()
        at_apply(self.store.state)
        for key, generation in self._generations().items():
            if outcome.get(key) == "unchanged" and generation != before.get(key):
                outcome[key] = "configured (its local input files changed)"
        self.store.save()
        return outcome

    def _generations(self) -> dict[str, Any]:
        resources = self.store.state.resources
        return {key: stored.body["metadata"].get("generation") for key, stored in resources.items()}

    def _forget_interrupted(self) -> None:
        """Steps that did not finish last time run again (same Job name, same output).

        A step process of an earlier run that is still alive (its runner was killed before it
        could stop it) is ended first (SIGTERM: it checkpoints; then SIGKILL), so there is never
        a second writer on its output.
        """
        for name, execution in list(self.store.state.executions.items()):
            if execution.state in ("Running", "Interrupted", "Pending"):
                if execution.pid and end_orphan(
                    execution.pid, execution.pid_start, execution.host, self.orphan_grace
                ):
                    self.notes.append(
                        f"ended step {name} (pid {execution.pid}) left running by an earlier run"
                    )
                self.store.delete_job(name)

    # --- the loop ----------------------------------------------------------------------------

    def ordered(self) -> list[StoredResource]:
        return sorted(
            self.store.state.resources.values(),
            key=lambda r: (KINDS.index(r.kind) if r.kind in KINDS else 99, r.name),
        )

    def world_for(self, stored: StoredResource) -> ObservedWorld:
        others: dict[tuple[str, str], AnyResource] = {
            other.key: self.parsed.get(other) for other in self.store.state.resources.values()
        }
        jobs = []
        progress = None
        for job in self.store.jobs_of(stored.kind, stored.name):
            execution = self.store.state.executions.get(job["metadata"]["name"])
            jobs.append(observe(job, execution))
            live = read_progress(execution)
            if live is not None:
                progress = LiveProgress.model_validate(live)
        config_maps = {
            child["metadata"]["name"]: child.get("data", {})
            for child in self.store.state.children.values()
            if child["kind"] == "ConfigMap"
            and LABEL_KIND not in child["metadata"].get("labels", {})
        }
        owned = {
            child.key: others[child.key]
            for child in self.store.owned_by(stored.uid)
            if child.key in others
        }
        return ObservedWorld(
            now=now(),
            resources=others,
            jobs=tuple(jobs),
            progress=progress,
            config_maps=config_maps,
            owned=owned,
        )

    def reconcile_once(self) -> bool:
        """One planning pass over every resource; True when anything changed."""
        changed = False
        for stored in self.ordered():
            if resource_key(*stored.key) not in self.store.state.resources:
                continue  # deleted earlier in this pass with its owner
            result = plan(self.parsed.get(stored), self.world_for(stored), self.config)
            result.children = [c for c in result.children if self.child_filters.allow(stored, c)]
            applied = self.applier.apply(stored, result)
            changed = applied.changed or changed
            self.notes.extend(n for n in applied.notes if n not in self.notes)
            if resource_key(*stored.key) not in self.store.state.resources:
                continue  # its own plan deleted it
            if result.status:
                self._add_log_path(stored, result.status)
            if result.status and result.status != stored.body.get("status"):
                self.store.set_status(stored.kind, stored.name, result.status)
                changed = True
            for event in result.events:
                self.store.add_event(
                    stored.kind, stored.name, event.type, event.reason, event.message
                )
        self.parsed.forget_missing({r.key for r in self.store.state.resources.values()})
        return changed

    def _add_log_path(self, stored: StoredResource, status: dict[str, Any]) -> None:
        """Local runs know where the current run's log is; put it in status.logPath."""
        for job in self.store.jobs_of(stored.kind, stored.name):
            labels = job["metadata"].get("labels", {})
            if labels.get(LABEL_RUN_ID) == status.get("runId"):
                execution = self.store.state.executions.get(job["metadata"]["name"])
                if execution is not None and execution.log_path:
                    status["logPath"] = execution.log_path

    def start_jobs(self) -> bool:
        started = False
        for job in list(self.store.state.children.values()):
            if job["kind"] != "Job" or job["spec"].get("suspend"):
                continue
            name = job["metadata"]["name"]
            if name in self.store.state.executions:
                continue
            if self.executor.running() >= self.parallel:
                break
            self.store.state.executions[name] = self.executor.start(job, self.store.state.children)
            started = True
        return started

    def poll(self) -> bool:
        changed = False
        for execution in self.store.state.executions.values():
            if execution.state == "Running" and self.executor.poll(execution):
                changed = True
        return changed

    def run(self) -> RunSummary:
        """Run until nothing more can happen; Ctrl-C stops cleanly and resumably."""
        summary = RunSummary(workdir=self.workdir)
        received: list[int] = []

        def on_term(signum: int, frame: Any) -> None:
            received.append(signum)
            raise KeyboardInterrupt

        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, on_term) if main else None
        try:
            while True:
                changed = self.poll()
                changed = self.reconcile_once() or changed
                changed = self.start_jobs() or changed
                if changed:
                    self.store.save()
                if self.on_change is not None:
                    self.on_change(self)
                if not changed and self.executor.running() == 0:
                    break
                if not changed:
                    time.sleep(self.poll_seconds)
        except KeyboardInterrupt:
            summary.interrupted = True
            summary.signal = received[0] if received else int(signal.SIGINT)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not stop the stop
            self.executor.stop_all()
            for execution in self.store.state.executions.values():
                if execution.state == "Running":
                    execution.state = "Interrupted"
                    execution.finished = now().isoformat()
            self.store.save()
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
        summary.resources = [r.body for r in self.ordered()]
        if summary.interrupted:
            summary.resources = with_interruptions(
                summary.resources, interrupted_resources(self.store)
            )
        summary.patched = dict(self.store.state.patched)
        return summary
