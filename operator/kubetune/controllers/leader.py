"""Leader election on a ``coordination.k8s.io/v1`` Lease, so that exactly one replica acts.

The algorithm is client-go's (``k8s.io/client-go/tools/leaderelection``), which kube-controller-
manager, controller-runtime operators and kube-scheduler use:

* a candidate reads the Lease; it takes it when nobody holds it, when the holder released it
  (empty ``holderIdentity``), or when the record has not changed for ``leaseDurationSeconds``
  **as timed by the candidate's own clock since it first saw that record** (so clock skew
  between nodes does not matter); every write carries the ``resourceVersion`` it read, so of two
  candidates only one wins (the other gets 409 Conflict);
* the leader renews every ``retry_period``; when it could not renew for ``renew_deadline``
  (shorter than the lease duration), or sees another holder, it has lost the lease and its
  process exits at once, before another replica can take over, so two never act together;
* on a clean stop (SIGTERM) the leader releases the Lease, so a standby takes over within
  ``retry_period`` instead of waiting for the lease to expire.

After SIGKILL of the leader a standby takes over within about ``lease_duration +
retry_period`` seconds (15 + 2 by default). No I/O happens here except through :class:`Api`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubetune.controllers.kube import Api, APIError, Conflict, NotFound

LEASE_NAME = "kubetune-operator"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

logger = logging.getLogger(__name__)


def micro_time(moment: datetime) -> str:
    """A ``metav1.MicroTime`` in the API's format: RFC 3339 with microseconds, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseConfig:
    """Which Lease, who we are, and the timing (seconds), as client-go names them."""

    namespace: str
    identity: str
    name: str = LEASE_NAME
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not (self.lease_duration > self.renew_deadline > self.retry_period > 0):
            raise ValueError(
                "leader election needs lease duration > renew deadline > retry period > 0, got "
                f"{self.lease_duration:g} > {self.renew_deadline:g} > {self.retry_period:g}"
            )


@dataclass
class _Observed:
    """The last Lease record seen, and when (monotonic clock) it was first seen."""

    resource_version: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    since: float = 0.0


class LeaderElector:
    """Acquires, renews and releases the Lease of :class:`LeaseConfig` through ``api``."""

    def __init__(
        self,
        api: Api,
        config: LeaseConfig,
        *,
        monotonic: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.api = api
        self.config = config
        self._monotonic = monotonic
        self._now = now
        self._observed = _Observed()
        self._last_renewal: float | None = None
        self._stop = threading.Event()

    @property
    def collection(self) -> str:
        return LEASES.format(namespace=self.config.namespace)

    @property
    def url(self) -> str:
        return f"{self.collection}/{self.config.name}"

    def _lease(self, spec: Mapping[str, Any], resource_version: str | None) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "name": self.config.name,
            "namespace": self.config.namespace,
            "labels": {
                "app.kubernetes.io/name": "kubetune",
                "app.kubernetes.io/component": "operator",
            },
        }
        if resource_version:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": dict(spec),
        }

    def _held_by_other(self, spec: Mapping[str, Any]) -> bool:
        holder = spec.get("holderIdentity") or ""
        if not holder or holder == self.config.identity:
            return False
        duration = float(spec.get("leaseDurationSeconds") or self.config.lease_duration)
        return self._monotonic() < self._observed.since + duration

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when this replica holds the Lease afterwards."""
        moment = micro_time(self._now())
        mine = {
            "holderIdentity": self.config.identity,
            "leaseDurationSeconds": int(self.config.lease_duration),
            "acquireTime": moment,
            "renewTime": moment,
            "leaseTransitions": 0,
        }
        try:
            current = self.api.request("GET", self.url)
        except NotFound:
            try:
                created = self.api.request("POST", self.collection, self._lease(mine, None))
            except Conflict:  # another candidate created it first
                return False
            self._seen(created)
            return True
        self._seen(current)
        spec = dict(current.get("spec") or {})
        if self._held_by_other(spec):
            return False
        if spec.get("holderIdentity") == self.config.identity:
            mine["acquireTime"] = spec.get("acquireTime") or moment
            mine["leaseTransitions"] = int(spec.get("leaseTransitions") or 0)
        else:
            mine["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
        version = (current.get("metadata") or {}).get("resourceVersion")
        try:
            updated = self.api.request("PUT", self.url, self._lease(mine, version))
        except Conflict:  # someone else wrote it since we read it
            return False
        self._seen(updated)
        return True

    def _seen(self, lease: Mapping[str, Any]) -> None:
        version = (lease.get("metadata") or {}).get("resourceVersion")
        if version != self._observed.resource_version:
            self._observed = _Observed(version, dict(lease.get("spec") or {}), self._monotonic())

    def acquire(self, stop: threading.Event | None = None) -> bool:
        """Block until this replica leads (True), or until ``stop`` is set (False)."""
        stop = stop or self._stop
        announced = False
        while not stop.is_set():
            try:
                if self.try_acquire_or_renew():
                    self._last_renewal = self._monotonic()
                    logger.info(
                        "became the leader (Lease %s/%s, identity %s)",
                        self.config.namespace,
                        self.config.name,
                        self.config.identity,
                    )
                    return True
                if not announced:
                    holder = self._observed.spec.get("holderIdentity")
                    logger.info("standing by: Lease %s is held by %s", self.config.name, holder)
                    announced = True
            except APIError as exc:
                logger.warning("cannot read or write Lease %s: %s", self.config.name, exc)
            stop.wait(self.config.retry_period)
        return False

    def keep(self, on_lost: Callable[[str], None]) -> threading.Thread:
        """Renew in a daemon thread; ``on_lost(why)`` is called once when the lease is lost."""

        def renew() -> None:
            while not self._stop.wait(self.config.retry_period):
                try:
                    if self.try_acquire_or_renew():
                        self._last_renewal = self._monotonic()
                        continue
                    why = f"Lease {self.config.name} is now held by another replica"
                except APIError as exc:
                    why = f"could not renew Lease {self.config.name}: {exc}"
                    last = self._last_renewal or 0.0
                    if self._monotonic() - last < self.config.renew_deadline:
                        logger.warning("%s; retrying", why)
                        continue
                if not self._stop.is_set():
                    on_lost(why)
                return

        thread = threading.Thread(target=renew, name="lease-renewal", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Stop renewing and give the Lease up (a standby takes over at its next attempt)."""
        self._stop.set()
        try:
            current = self.api.request("GET", self.url)
            spec = dict(current.get("spec") or {})
            if spec.get("holderIdentity") != self.config.identity:
                return
            spec.update(
                holderIdentity="",
                leaseDurationSeconds=1,
                renewTime=micro_time(self._now()),
            )
            version = (current.get("metadata") or {}).get("resourceVersion")
            self.api.request("PUT", self.url, self._lease(spec, version))
            logger.info("released Lease %s/%s", self.config.namespace, self.config.name)
        except APIError as exc:
            logger.warning("could not release Lease %s: %s", self.config.name, exc)
