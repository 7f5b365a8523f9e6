"""One reconciliation of one kubetune resource: observe, plan, apply, report.

1. Read the newest body (index or this operator's own last write) and parse it into the typed
   model; a spec that does not parse gets a ``Failed`` status with reason ``InvalidSpec`` and the
   field paths, and waits for the next change (:class:`InvalidSpec`).
2. Build the :class:`~kubetune.plan.world.ObservedWorld` from the indexes: referenced resources,
   the kubetune resources it controls, its Jobs and Pods, referenced ConfigMaps, live progress,
   and for a ``publish.kserve`` target whether KServe is installed and its InferenceService.
3. Call the pure planner, then apply its answer idempotently: delete what it supersedes (Jobs,
   an old cycle's resources), create the children that are missing (``409 AlreadyExists`` means
   "already there"), patch (its own Jobs, or a promotion target of any kind, found by API
   discovery), write the status only when it changed, and post the planner's events only after
   that write succeeded (so each transition is announced once). A write the API server refuses
   (403, 404, 422, a kind it does not serve) stops the pass before the status: a Warning event
   names the object and the loop retries with backoff (:class:`ApplyFailed`).
4. Record metrics. Return when to come back without an event (``requeue_after``).

Failures that a retry may fix raise :class:`kopf.TemporaryError`; the caller backs off.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import aiohttp
import kopf
from pydantic import ValidationError

from kubetune.api.contract import JOB_NAME_LABEL, LABEL_RUN_ID
from kubetune.api.resources import AnyResource
from kubetune.api.serving import INFERENCE_SERVICE, KSERVE_API_VERSION
from kubetune.api.steps import LiveProgress
from kubetune.controllers import metrics
from kubetune.controllers import status as status_writes
from kubetune.controllers.base import KindController
from kubetune.controllers.cache import (
    Fresh,
    Indexes,
    Key,
    job_finished,
    key_of,
    newest,
    parse,
    parse_lenient,
    plain,
    pod_finished,
)
from kubetune.controllers.discovery import OWN_RESOURCES, Discovery, UnknownKind
from kubetune.controllers.kube import (
    Api,
    APIError,
    Client,
    Conflict,
    Unprocessable,
    describe,
    object_url,
)
from kubetune.controllers.progress import fetch_progress, running_pod_ip
from kubetune.plan import (
    ObservedWorld,
    OperatorConfig,
    Plan,
    observe_job,
    plan,
    referenced_config_maps,
    referenced_resources,
)
from kubetune.plan.serving import kserve_target, service_name
from kubetune.plan.world import Event, ObservedServing

T = TypeVar("T")
TERMINAL = ("Succeeded", "Failed", "Ready")
STATUS_ATTEMPTS = 3


class InvalidSpec(kopf.PermanentError):
    """The resource's spec does not validate; retrying cannot help until it changes."""


class ChildRejected(InvalidSpec):
    """The API server refused (422 Invalid) a Job, ConfigMap or Service built from the spec:
    the run is Failed with reason ``ChildRejected`` and the server's message, one Warning
    event is posted, and nothing is retried until the spec changes (a new generation)."""


# Children whose 422 ends the run: the operator builds them from the spec alone.
REJECTABLE_CHILDREN = frozenset({("batch/v1", "Job"), ("v1", "ConfigMap"), ("v1", "Service")})


# API answers to a write that a retry alone will not fix (RBAC, a missing object or kind, a
# manifest the API server rejects): the loop logs them as warnings and retries with backoff.
REFUSALS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 422: "Invalid"}


class ApplyFailed(kopf.TemporaryError):
    """The API server refused a write of the plan (or does not serve its kind); the status is
    not written, a Warning event names the object, and the loop retries with backoff."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, delay=0)
        self.reason = f"Apply{reason}"


def utc_now() -> datetime:
    """The wall clock, in UTC (what ``ObservedWorld.now`` is read from)."""
    return datetime.now(UTC)


@dataclass
class Runtime:
    """State shared by the handlers of one operator process (kept in kopf's memo)."""

    config: OperatorConfig
    controllers: dict[str, KindController]
    api: Api
    fresh: Fresh = field(default_factory=Fresh)
    progress: dict[Key, tuple[str, LiveProgress]] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None
    discovery: Discovery = field(default_factory=Discovery)
    # The latest refused write of each resource, so its Warning event is posted once.
    refusals: dict[Key, str] = field(default_factory=dict)
    # What the planners see as "now" (tests give a clock they move by hand).
    clock: Callable[[], datetime] = utc_now


@dataclass(frozen=True)
class Outcome:
    """What one reconciliation decided."""

    phase: str | None
    requeue_after: float | None


class Reconciler:
    """Reconciles resources with a client, the indexes and the shared runtime."""

    def __init__(
        self, runtime: Runtime, client: Client, indexes: Indexes, logger: kopf.Logger
    ) -> None:
        self.runtime = runtime
        self.client = client
        self.indexes = indexes
        self.logger = logger

    # --- entry point ------------------------------------------------------------------------

    async def reconcile(self, key: Key, poll_progress: bool = False) -> Outcome | None:
        """Reconcile one resource; None when it is gone or being deleted."""
        kind = key[1]
        started = time.perf_counter()
        error: str | None = None
        try:
            return await self._reconcile(key, poll_progress)
        except InvalidSpec:
            raise
        except Exception as exc:
            error = type(exc).__name__
            raise
        finally:
            metrics.record_reconcile(kind, time.perf_counter() - started, error)

    async def _reconcile(self, key: Key, poll_progress: bool) -> Outcome | None:
        body = newest(self.indexes.resource(key), self.runtime.fresh.get(key))
        if body is None or (body.get("metadata") or {}).get("deletionTimestamp"):
            return None
        resource = await self._parse_or_report(body)
        if status_writes.rejected_generation(body):
            # A child of this generation was refused: wait for a spec change, do not retry.
            return Outcome(phase="Failed", requeue_after=None)
        world = await self._observe(key, resource, poll_progress)
        result = plan(resource, world, self.runtime.config)
        try:
            await self._apply(key, body, result)
        except ChildRejected as exc:
            await self._report_rejected(body, str(exc))
            raise
        written = await self._write_status(body, result.status)
        if written is not None:
            self._post_events(written, result.events)
            self._record_metrics(resource, body.get("status") or {}, written.get("status") or {})
        phase = (written or body).get("status", {}).get("phase")
        return Outcome(phase=phase, requeue_after=result.requeue_after)

    # --- parsing ----------------------------------------------------------------------------

    async def _parse_or_report(self, body: dict[str, Any]) -> AnyResource:
        try:
            return parse(body)
        except ValidationError as exc:
            spec_error = exc
        resource = parse_lenient(body)
        if resource is not None:  # only the stored status is unreadable: plan from scratch
            self.logger.warning("ignoring an unreadable status: %s", spec_error.error_count())
            return resource.model_copy(update={"status": None})
        message = status_writes.validation_message(spec_error)
        desired = status_writes.invalid_spec_status(body, message, self.runtime.clock())
        written = await self._write_status(body, desired)
        if written is not None:
            event = Event("Warning", status_writes.INVALID_SPEC, f"invalid spec: {message}")
            self._post_events(written, [event])
            metrics.record_phase(body["kind"], *_ns_name(body), "Failed")
        raise InvalidSpec(f"invalid spec: {message}")

    async def _report_rejected(self, body: dict[str, Any], message: str) -> None:
        """Fail the run with reason ChildRejected: status, one Warning event, the metric."""
        reason = status_writes.CHILD_REJECTED
        desired = status_writes.invalid_spec_status(body, message, self.runtime.clock(), reason)
        written = await self._write_status(body, desired)
        if written is not None:
            self._post_events(written, [Event("Warning", reason, message)])
            metrics.record_phase(body["kind"], *_ns_name(body), "Failed")

    # --- observing --------------------------------------------------------------------------

    async def _observe(self, key: Key, resource: AnyResource, poll: bool) -> ObservedWorld:
        namespace = resource.namespace
        jobs = self.indexes.jobs(key, resource.metadata.uid)
        observed = tuple([observe_job(job, await self._pods_of(job)) for job in jobs])
        others: dict[tuple[str, str], AnyResource] = {}
        for ref_kind, ref_name in referenced_resources(resource):
            found = newest(
                self.indexes.resource((namespace, ref_kind, ref_name)),
                self.runtime.fresh.get((namespace, ref_kind, ref_name)),
            )
            parsed = parse_lenient(found) if found is not None else None
            if parsed is not None:
                others[(ref_kind, ref_name)] = parsed
        config_maps: dict[str, dict[str, str]] = {}
        for name in referenced_config_maps(resource):
            found = await self.client.get(object_url("v1", "ConfigMap", namespace, name))
            if found is not None:
                config_maps[name] = dict(found.get("data") or {})
        progress = await self._progress(key, resource, jobs, poll)
        return ObservedWorld(
            now=self.runtime.clock(),
            resources=others,
            jobs=observed,
            progress=progress,
            config_maps=config_maps,
            owned=self._owned(key, resource),
            serving=await self._serving(resource),
        )

    async def _serving(self, resource: AnyResource) -> ObservedServing | None:
        """KServe as the resource's ``publish.kserve`` target sees it: whether the API server
        serves InferenceServices (API discovery; a missing CRD is a status, not an error) and
        the one the resource targets, read fresh (its watch events wake the resource)."""
        target = kserve_target(resource)
        if target is None:
            return None
        try:
            kind = await self.client.resource(KSERVE_API_VERSION, INFERENCE_SERVICE)
        except UnknownKind:
            return ObservedServing(installed=False)
        name = service_name(resource, target)
        found = await self.client.get(kind.url(resource.namespace, name))
        return ObservedServing(installed=True, inference_services={name: found} if found else {})

    async def _pods_of(self, job: Mapping[str, Any]) -> list[dict[str, Any]]:
        """A Job's Pods from the index; from the API when the Job has finished but no Pod in
        the index has (Pods and Jobs come by separate watch streams, so a Job's completion can
        arrive before its Pod's termination message, which holds the run's results)."""
        meta = job["metadata"]
        namespace, name = str(meta.get("namespace") or "default"), str(meta["name"])
        indexed = self.indexes.pods(namespace, name)
        if not job_finished(job) or any(pod_finished(p) for p in indexed):
            return indexed
        url = object_url("v1", "Pod", namespace)
        listed = await self.client.list_objects(url, f"{JOB_NAME_LABEL}={name}")
        self.logger.debug("read %d Pods of the finished Job %s from the API", len(listed), name)
        return listed if any(pod_finished(p) for p in listed) else indexed

    def _owned(self, key: Key, resource: AnyResource) -> dict[tuple[str, str], AnyResource]:
        """The kubetune resources this one controls (ownerReference uid = its uid), parsed."""
        owned: dict[tuple[str, str], AnyResource] = {}
        for indexed in self.indexes.owned(key, resource.metadata.uid):
            child_key = key_of(indexed)
            found = newest(indexed, self.runtime.fresh.get(child_key))
            parsed = parse_lenient(found) if found is not None else None
            if parsed is not None:
                owned[(parsed.kind, parsed.name)] = parsed
        return owned

    async def _progress(
        self, key: Key, resource: AnyResource, jobs: list[dict[str, Any]], poll: bool
    ) -> LiveProgress | None:
        """The run's last known progress; read anew from the pod when ``poll`` is set."""
        controller = self.runtime.controllers.get(resource.kind)
        status = resource.status
        run_id = status.run_id if status is not None else None
        if controller is None or not controller.polls_progress or run_id is None:
            return None
        session = self.runtime.session
        if poll and session is not None:
            pods = [
                pod
                for job in jobs
                if job["metadata"].get("labels", {}).get(LABEL_RUN_ID) == run_id
                for pod in self.indexes.pods(resource.namespace, job["metadata"]["name"])
            ]
            ip = running_pod_ip(pods)
            fetched = (
                await fetch_progress(session, ip, self.runtime.config.progress_port, self.logger)
                if ip
                else None
            )
            if fetched is not None:
                self.runtime.progress[key] = (run_id, fetched)
        kept = self.runtime.progress.get(key)
        return kept[1] if kept is not None and kept[0] == run_id else None

    # --- applying ---------------------------------------------------------------------------

    async def _apply(self, key: Key, body: Mapping[str, Any], result: Plan) -> None:
        """Apply the plan's deletions, children and patches; warn once about what is refused."""
        try:
            await self._apply_children(result)
        except ApplyFailed as exc:
            if self.runtime.refusals.get(key) != str(exc):
                self.runtime.refusals[key] = str(exc)
                self._post_events(body, [Event("Warning", exc.reason, str(exc))])
            raise
        self.runtime.refusals.pop(key, None)

    async def _apply_children(self, result: Plan) -> None:
        for ref in result.deletions:
            if await self._refusing("delete", ref, self.client.delete(ref)):
                self.logger.info("deleted %s", describe(ref))
        for child in result.children:
            _, created = await self._refusing("create", child, self._create(child))
            if created:
                self.logger.info("created %s", describe(child))
        for patch in result.patches:
            await self._patch(patch)

    async def _create(self, child: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create a child; a 422 on a Job, ConfigMap or Service is :class:`ChildRejected`."""
        try:
            return await self.client.create(child)
        except Unprocessable as exc:
            if (child.get("apiVersion"), child.get("kind")) not in REJECTABLE_CHILDREN:
                raise
            raise ChildRejected(
                f"the API server rejected {describe(child)}: {exc}; fix the spec "
                "(a new generation starts a new run)"
            ) from exc

    async def _patch(self, patch: Mapping[str, Any]) -> None:
        """Merge-patch any object; a missing target that the operator does not create is an
        error (a promotion target), a missing Job of its own is not (it was deleted)."""

        async def apply() -> dict[str, Any] | None:
            return await self.client.merge_patch(await self.client.url(patch), patch)

        patched = await self._refusing("patch", patch, apply())
        if patched is not None:
            self.logger.info("patched %s", describe(patch))
        elif (patch["apiVersion"], patch["kind"]) in OWN_RESOURCES:
            self.logger.debug("not patching %s: it no longer exists", describe(patch))
        else:
            raise ApplyFailed(f"cannot patch {describe(patch)}: it does not exist", "NotFound")

    async def _refusing(self, verb: str, obj: Mapping[str, Any], call: Awaitable[T]) -> T:
        """Await an API call; a refusal that only a change can fix becomes :class:`ApplyFailed`.

        Server errors and throttling are left to kopf's retries and the loop's backoff.
        """
        try:
            return await call
        except UnknownKind as exc:
            raise ApplyFailed(f"cannot {verb} {describe(obj)}: {exc}", "UnknownKind") from exc
        except APIError as exc:
            if exc.status not in REFUSALS:
                raise
            reason = REFUSALS[exc.status]
            message = f"cannot {verb} {describe(obj)}: {exc.status} {reason}: {exc}"
            raise ApplyFailed(message, reason) from exc

    async def _write_status(
        self, body: dict[str, Any], desired: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """Write the status if it differs; returns the updated body, or None if unchanged."""
        current = body
        for _attempt in range(STATUS_ATTEMPTS):
            merged = status_writes.merged_status(desired, current.get("status"))
            if not status_writes.differs(merged, current.get("status")):
                return None
            meta = current["metadata"]
            url = object_url(
                current["apiVersion"], current["kind"], meta["namespace"], meta["name"]
            )
            ops = status_writes.status_ops(merged, meta.get("resourceVersion"))
            try:
                updated = await self.client.json_patch(f"{url}/status", ops)
            except (Conflict, Unprocessable) as exc:
                # The object changed since it was read: re-read it and recompute the merge.
                self.logger.debug("status write conflicted (%s); re-reading", exc.status)
                fresh = await self.client.get(url)
                if fresh is None:
                    return None
                self.runtime.fresh.remember(fresh)
                if fresh["metadata"].get("generation") != meta.get("generation"):
                    raise kopf.TemporaryError("the spec changed while planning", delay=0) from exc
                current = fresh
                continue
            if updated is None:
                return None
            self.runtime.fresh.remember(updated)
            return updated
        raise kopf.TemporaryError("the status kept conflicting with other writers", delay=0.5)

    def _post_events(self, body: Mapping[str, Any], events: list[Event]) -> None:
        for event in events:
            kopf.event(
                kopf.Body(plain(body)), type=event.type, reason=event.reason, message=event.message
            )

    # --- metrics ----------------------------------------------------------------------------

    def _record_metrics(
        self, resource: AnyResource, old: Mapping[str, Any], new: Mapping[str, Any]
    ) -> None:
        namespace, name = resource.namespace, resource.name
        phase = new.get("phase")
        metrics.record_phase(resource.kind, namespace, name, phase)
        controller = self.runtime.controllers.get(resource.kind)
        if controller is not None:
            controller.observe_status(namespace, name, new, old)
        just_finished = phase in TERMINAL and (
            old.get("phase") not in TERMINAL or old.get("runId") != new.get("runId")
        )
        start, end = _time(new.get("startTime")), _time(new.get("completionTime"))
        if not just_finished or start is None or end is None:
            return
        metrics.record_finished_run(
            resource.kind,
            namespace,
            "Failed" if phase == "Failed" else "Succeeded",
            (end - start).total_seconds(),
            new.get("usage"),
        )


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def _ns_name(body: Mapping[str, Any]) -> tuple[str, str]:
    meta = body.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name"))
