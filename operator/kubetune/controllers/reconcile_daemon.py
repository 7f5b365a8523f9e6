"""The per-resource reconcile loop (a kopf daemon) and what wakes it.

kopf starts one daemon per kubetune resource (and one for each existing resource after a
restart, once every index is filled) and stops it when the resource is deleted. The daemon
reconciles, then sleeps until it is woken or its requeue time comes:

* the resource's own watch events wake it (spec, annotation or status changes);
* its Jobs' and Pods' events wake it (through the owner indexes);
* a dependency's readiness change wakes every resource that references it (referrers index);
* a controlled kubetune resource's readiness change or deletion wakes its controller (a
  FeedbackLoop's cycle Evaluation finishing wakes the loop at once);
* ``requeue_after`` from the planner (running: refresh live progress; waiting: a slow fallback
  re-check; a FeedbackLoop: its next count or schedule) and the backoff after a failure (a
  refused write such as a missing promotion target is logged as a warning) wake it by time.

One loop per resource serializes its reconciliations; the level-based planner makes a wake-up
that finds nothing to do cost no API writes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf

from kubetune.api.common import GROUP
from kubetune.api.kinds import KIND_INFO
from kubetune.api.serving import KSERVE_API_VERSION, KSERVE_GROUP
from kubetune.controllers import metrics
from kubetune.controllers.base import KindController
from kubetune.controllers.cache import (
    VERSION,
    Indexes,
    Key,
    job_name_of_pod,
    key_of,
    kubetune_owner,
    owner_key,
    plain,
)
from kubetune.controllers.kube import Client
from kubetune.controllers.reconcile import ApplyFailed, InvalidSpec, Reconciler, Runtime
from kubetune.plan import naming

MEMO_KEY = "kubetune"
BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
FINGERPRINT_FIELDS = ("phase", "observedGeneration", "outputUri", "artifactHash", "runId")


@dataclass
class Wakers:
    """One asyncio.Event per resource; setting it wakes the resource's loop."""

    events: dict[Key, asyncio.Event] = field(default_factory=dict)
    fingerprints: dict[Key, tuple[Any, ...]] = field(default_factory=dict)

    def of(self, key: Key) -> asyncio.Event:
        return self.events.setdefault(key, asyncio.Event())

    def wake(self, key: Key) -> None:
        self.of(key).set()

    def wake_if_looping(self, key: Key) -> None:
        """Wake a resource whose loop has started (a deleted owner is not brought back)."""
        event = self.events.get(key)
        if event is not None:
            event.set()

    def forget(self, key: Key) -> None:
        self.events.pop(key, None)
        self.fingerprints.pop(key, None)


def runtime_of(memo: Any) -> tuple[Runtime, Wakers]:
    """The shared runtime and wakers (created by the startup handler)."""
    state = memo[MEMO_KEY] if isinstance(memo, Mapping) else getattr(memo, MEMO_KEY)
    runtime, wakers = state
    return runtime, wakers


def readiness(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What referrers care about: generation and the done state of the current run."""
    status = body.get("status") or {}
    meta = body.get("metadata") or {}
    conditions = tuple(
        (c.get("type"), c.get("status"), c.get("observedGeneration"))
        for c in status.get("conditions") or []
        if c.get("type") in ("Ready", "Succeeded")
    )
    return (
        meta.get("generation"),
        meta.get("deletionTimestamp") is not None,
        *(status.get(f) for f in FINGERPRINT_FIELDS),
        conditions,
    )


class Backoff:
    """Growing delays after consecutive failures."""

    def __init__(self) -> None:
        self.failures = 0

    def reset(self) -> None:
        self.failures = 0

    def next(self, at_least: float | None = None) -> float:
        delay = BACKOFF_SECONDS[min(self.failures, len(BACKOFF_SECONDS) - 1)]
        self.failures += 1
        return max(delay, at_least or 0.0)


async def _sleep(waker: asyncio.Event, stopped: kopf.DaemonStopped, delay: float | None) -> bool:
    """Sleep until woken, stopped, or ``delay`` passed; True when woken by an event."""

    async def until_stopped() -> None:
        await stopped.wait()

    tasks = [asyncio.create_task(waker.wait()), asyncio.create_task(until_stopped())]
    try:
        await asyncio.wait(tasks, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return waker.is_set()


async def _reconcile_once(
    reconciler: Reconciler, key: Key, backoff: Backoff, logger: kopf.Logger, poll: bool
) -> tuple[float | None, str | None]:
    """One reconciliation: (when to come back, None = only when woken; the run's phase)."""
    try:
        outcome = await reconciler.reconcile(key, poll_progress=poll)
    except InvalidSpec as exc:
        logger.warning("%s", exc)
        return None, None
    except ApplyFailed as exc:
        delay = backoff.next()
        logger.warning("%s; retrying in %.1fs", exc, delay)
        return delay, None
    except kopf.TemporaryError as exc:
        delay = backoff.next(exc.delay)
        logger.info("reconcile will be retried in %.1fs: %s", delay, exc)
        return delay, None
    except Exception as exc:
        delay = backoff.next()
        logger.exception("reconcile failed, retrying in %.1fs: %r", delay, exc)
        return delay, None
    backoff.reset()
    if outcome is None:
        return None, None
    return outcome.requeue_after, outcome.phase


async def _reconcile_until_stopped(
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    memo: kopf.Memo,
    logger: kopf.Logger,
    kwargs: dict[str, Any],
) -> None:
    """The daemon's body: reconcile, then sleep until woken or requeued, until stopped."""
    runtime, wakers = runtime_of(memo)
    key = key_of(body)
    waker = wakers.of(key)
    client = Client(runtime.api, logger, runtime.discovery)
    backoff = Backoff()
    poll = False
    while not stopped:
        waker.clear()
        reconciler = Reconciler(runtime, client, Indexes(kwargs), logger)
        delay, phase = await _reconcile_once(reconciler, key, backoff, logger, poll)
        woken = await _sleep(waker, stopped, delay)
        poll = not woken and phase == "Running"


def _wake_on_event(
    kind: str, type: str | None, body: kopf.Body, memo: kopf.Memo, kwargs: dict[str, Any]
) -> None:
    """A resource's watch event: wake its loop, and on a readiness change its referrers and
    its kubetune owner; a deletion forgets what the runtime kept of it."""
    runtime, wakers = runtime_of(memo)
    key = key_of(body)
    current = readiness(body)
    if type == "DELETED":
        wakers.forget(key)
        runtime.fresh.forget(key)
        runtime.progress.pop(key, None)
        runtime.refusals.pop(key, None)
        controller = runtime.controllers.get(kind)
        metrics.forget_resource(kind, key[0], key[2], controller.series if controller else ())
    else:
        wakers.wake(key)
        if wakers.fingerprints.get(key) == current:
            return
        wakers.fingerprints[key] = current
    for referrer in sorted(Indexes(kwargs).referrers(key)):
        wakers.wake(referrer)
    owner = kubetune_owner(body)
    if owner is not None:
        wakers.wake_if_looping(owner[0])


def register_kind(registry: kopf.OperatorRegistry, controller: KindController) -> None:
    """The reconcile loop of a kind and the watch handler that wakes it and its referrers."""
    plural = KIND_INFO[controller.kind].plural

    @kopf.daemon(
        GROUP,
        VERSION,
        plural,
        id=f"reconcile-{plural}",
        cancellation_timeout=10.0,
        registry=registry,
    )
    async def reconcile_loop(
        stopped: kopf.DaemonStopped,
        body: kopf.Body,
        memo: kopf.Memo,
        logger: kopf.Logger,
        **kwargs: Any,
    ) -> None:
        await _reconcile_until_stopped(stopped, body, memo, logger, kwargs)

    @kopf.on.event(GROUP, VERSION, plural, id=f"wake-{plural}", registry=registry)
    async def on_resource_event(
        type: str | None, body: kopf.Body, memo: kopf.Memo, **kwargs: Any
    ) -> None:
        _wake_on_event(controller.kind, type, body, memo, kwargs)


def register_children(registry: kopf.OperatorRegistry) -> None:
    """Job, Pod and InferenceService events wake the kubetune resource that owns them."""
    labels = {naming.LABEL_KIND: kopf.PRESENT}

    @kopf.on.event("batch", "v1", "jobs", id="wake-job-owner", labels=labels, registry=registry)
    async def on_job_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        owner = owner_key(plain(body))
        if owner is not None:
            runtime_of(memo)[1].wake(owner)

    @kopf.on.event("", "v1", "pods", id="wake-pod-owner", labels=labels, registry=registry)
    async def on_pod_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        job = job_name_of_pod(body)
        if job is None:
            return
        owner = Indexes(kwargs).job_owner(str(body.metadata.namespace or "default"), job)
        if owner is not None:
            runtime_of(memo)[1].wake(owner)

    # KServe InferenceServices the operator created (spec.publish.kserve): a change of their
    # status (Ready, url, traffic) wakes their owner. Without KServe's CRD kopf only warns and
    # starts watching once the CRD appears.
    @kopf.on.event(
        KSERVE_GROUP,
        KSERVE_API_VERSION.split("/")[1],
        "inferenceservices",
        id="wake-inferenceservice-owner",
        labels=labels,
        registry=registry,
    )
    async def on_inference_service_event(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        owner = owner_key(plain(body))
        if owner is not None:
            runtime_of(memo)[1].wake_if_looping(owner)
