"""One reconciliation of one kubetune resource: observe, plan, apply, report.

1. Read the newest body (index or this operator's own last write) and parse it into the typed
   model; a spec that does not parse gets a ``Failed`` status with reason ``InvalidSpec`` and the
   field paths, and waits for the next change (:class:`InvalidSpec`).
2. Build the :class:`~kubetune.plan.world.ObservedWorld` from the indexes: referenced resources,
   the resource's Jobs and Pods, referenced ConfigMaps, live progress.
3. Call the pure planner, then apply its answer idempotently: delete superseded Jobs, create the
   children that are missing (``409 AlreadyExists`` means "already there"), patch, write the
   status only when it changed, and post the planner's events only after that write succeeded
   (so each transition is announced once).
4. Record metrics. Return when to come back without an event (``requeue_after``).

Failures that a retry may fix raise :class:`kopf.TemporaryError`; the caller backs off.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import kopf
from pydantic import ValidationError

from kubetune import metrics
from kubetune.api.resources import AnyResource
from kubetune.api.steps import LiveProgress
from kubetune.controllers import status as status_writes
from kubetune.controllers.base import KindController
from kubetune.controllers.cache import Fresh, Indexes, Key, newest, parse, parse_lenient, plain
from kubetune.controllers.kube import Client, Conflict, Unprocessable, object_url, url_of
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
from kubetune.plan.world import Event

TERMINAL = ("Succeeded", "Failed", "Ready")
STATUS_ATTEMPTS = 3


class InvalidSpec(kopf.PermanentError):
    """The resource's spec does not validate; retrying cannot help until it changes."""


@dataclass
class Runtime:
    """State shared by the handlers of one operator process (kept in kopf's memo)."""

    config: OperatorConfig
    controllers: dict[str, KindController]
    settings: kopf.OperatorSettings
    fresh: Fresh = field(default_factory=Fresh)
    progress: dict[Key, tuple[str, LiveProgress]] = field(default_factory=dict)
    session: aiohttp.ClientSession | None = None


@dataclass(frozen=True)
class Outcome:
    """What one reconciliation decided."""

    phase: str | None
    requeue_after: float | None


def _now() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    """Reconciles resources with a client, the indexes and the shared runtime."""

    def __init__(
        self, runtime: Runtime, client: Client, indexes: Indexes, logger: logging.Logger
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
        world = await self._observe(key, resource, poll_progress)
        result = plan(resource, world, self.runtime.config)
        await self._apply_children(result)
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
        desired = status_writes.invalid_spec_status(body, message, _now())
        written = await self._write_status(body, desired)
        if written is not None:
            event = Event("Warning", status_writes.INVALID_SPEC, f"invalid spec: {message}")
            self._post_events(written, [event])
            metrics.record_phase(body["kind"], *_ns_name(body), "Failed")
        raise InvalidSpec(f"invalid spec: {message}")

    # --- observing --------------------------------------------------------------------------

    async def _observe(self, key: Key, resource: AnyResource, poll: bool) -> ObservedWorld:
        namespace = resource.namespace
        jobs = self.indexes.jobs(key, resource.metadata.uid)
        observed = tuple(
            observe_job(job, self.indexes.pods(namespace, job["metadata"]["name"])) for job in jobs
        )
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
            now=_now(),
            resources=others,
            jobs=observed,
            progress=progress,
            config_maps=config_maps,
        )

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
                if job["metadata"].get("labels", {}).get("kubetune.dev/run-id") == run_id
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

    async def _apply_children(self, result: Plan) -> None:
        for ref in result.deletions:
            if await self.client.delete(ref):
                self.logger.info("deleted superseded %s %s", ref["kind"], ref["metadata"]["name"])
        for child in result.children:
            _, created = await self.client.create(child)
            if created:
                self.logger.info("created %s %s", child["kind"], child["metadata"]["name"])
        for patch in result.patches:
            await self.client.merge_patch(url_of(patch), patch)

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
            controller.observe_status(namespace, name, new)
        just_finished = phase in TERMINAL and (
            old.get("phase") not in TERMINAL or old.get("runId") != new.get("runId")
        )
        start, end = _time(new.get("startTime")), _time(new.get("completionTime"))
        if not just_finished or start is None or end is None:
            return
        resources = getattr(resource.spec, "resources", None)
        metrics.record_finished_run(
            resource.kind,
            namespace,
            "Failed" if phase == "Failed" else "Succeeded",
            (end - start).total_seconds(),
            int(getattr(resources, "gpus", 0) or 0),
            int(getattr(resources, "nodes", 1) or 1),
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
