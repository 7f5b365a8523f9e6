"""What a planner sees and what it returns. Plain data, no I/O.

The controllers (kopf) and the local runtime both build an :class:`ObservedWorld` from their
store, call :func:`kubetune.plan.plan`, then apply the :class:`Plan`: create the children that
do not exist yet (idempotently), patch the status, emit the events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from kubetune.api.resources import AnyResource
from kubetune.api.steps import LiveProgress


@dataclass(frozen=True)
class ObservedPod:
    """The facts of one pod of a step's Job that status needs."""

    name: str
    phase: str  # Pending | Running | Succeeded | Failed | Unknown
    termination_message: str | None = None
    terminated_reason: str | None = None  # OOMKilled, Error, Completed, DeadlineExceeded...
    exit_code: int | None = None
    waiting_reason: str | None = None  # ImagePullBackOff, ErrImagePull, CrashLoopBackOff...
    waiting_message: str | None = None
    unschedulable_message: str | None = None  # PodScheduled=False reason=Unschedulable
    last_log_line: str | None = None
    start_time: datetime | None = None


@dataclass(frozen=True)
class ObservedJob:
    """A batch/v1 Job created for a run, as observed."""

    name: str
    run_id: str
    active: int = 0
    succeeded: int = 0
    failed: int = 0
    suspended: bool = False
    conditions: tuple[dict[str, Any], ...] = ()  # Job status.conditions as in the API
    start_time: datetime | None = None
    completion_time: datetime | None = None
    pods: tuple[ObservedPod, ...] = ()
    # Annotation kubetune.dev/spec-hash: the run-relevant spec the Job was built from.
    spec_hash: str | None = None


@dataclass(frozen=True)
class ObservedServing:
    """What the shell saw of KServe for a resource with a ``publish.kserve`` target."""

    # Whether the API server serves serving.kserve.io/v1beta1 InferenceService (the CRD exists).
    installed: bool
    # The InferenceServices the resource targets, by name (raw API objects), when they exist.
    inference_services: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ObservedWorld:
    """Everything a planner may look at for one resource."""

    now: datetime
    # Other kubetune resources of the same namespace, by (kind, name).
    resources: dict[tuple[str, str], AnyResource] = field(default_factory=dict)
    # This resource's Jobs (all runs).
    jobs: tuple[ObservedJob, ...] = ()
    # Live progress read from the running pod's progress endpoint, if any.
    progress: LiveProgress | None = None
    # ConfigMap data the resource references (name -> data), read by the shell.
    config_maps: dict[str, dict[str, str]] = field(default_factory=dict)
    # kubetune resources this resource controls (controller ownerReference with its uid), by
    # (kind, name): a FeedbackLoop's cycle Datasets, FinetuneJobs, Compressions, Evaluations.
    owned: dict[tuple[str, str], AnyResource] = field(default_factory=dict)
    # KServe, for a resource with a publish.kserve target; None: not observed (local runtime).
    serving: ObservedServing | None = None


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event to emit on the resource."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class OperatorConfig:
    """Operator settings that shape the manifests (flags/env of `kubetune operator`)."""

    cpu_image: str = "ghcr.io/kubetune/workloads-cpu:0.1.0"
    cuda_image: str = "ghcr.io/kubetune/workloads-cuda:0.1.0"
    # Where outputs go when a spec sets no output.uri: <store>/<ns>/<kind>/<name>/<run-id>.
    artifact_store: str = "pvc://kubetune-artifacts"
    image_pull_secrets: tuple[str, ...] = ()
    service_account: str | None = None
    ttl_seconds_after_finished: int = 7 * 24 * 3600
    progress_port: int = 9400
    pvc_mount_root: str = "/mnt/pvc"
    rendezvous_port: int = 29500
    image_pull_policy: str = "IfNotPresent"
    # Earlier runs kept in status.history.
    history_limit: int = 10
    # Re-plan a running step this often to refresh status.progress from the pod.
    progress_interval_seconds: float = 30.0
    # Re-check waiting dependencies this often, besides the watch on them.
    dependency_recheck_seconds: float = 300.0
    # --- tenancy (docs/operator.md, "Threat model") ---
    # Images a resource's spec.image may name: exact names, or prefixes ending in '*'
    # (registry.example.com/kubetune/*). Empty: only cpu_image and cuda_image.
    allowed_images: tuple[str, ...] = ()
    # Per-namespace ServiceAccount of workload pods ((namespace, name), ...); else
    # service_account (None: the namespace's default account, with no token mounted).
    namespace_service_accounts: tuple[tuple[str, str], ...] = ()
    # Per-namespace imagePullSecrets ((namespace, secret), ...), added to image_pull_secrets.
    namespace_image_pull_secrets: tuple[tuple[str, str], ...] = ()
    # CPU/memory requests of pods whose spec sets none: ((step, cpu, memory), ...); a GPU step
    # with no entry of its own uses "<step>-gpu" when present.
    default_requests: tuple[tuple[str, str, str], ...] = (
        ("dataprep", "1", "2Gi"),
        ("finetune", "2", "8Gi"),
        ("finetune-gpu", "4", "32Gi"),
        ("compress", "2", "8Gi"),
        ("compress-gpu", "4", "32Gi"),
        ("evaluate", "1", "4Gi"),
        ("evaluate-gpu", "4", "32Gi"),
        ("feedback", "500m", "1Gi"),
    )
    # Address the Prometheus exporter binds (127.0.0.1 behind the kube-rbac-proxy sidecar).
    metrics_bind_address: str = "0.0.0.0"

    def image_allowed(self, image: str) -> bool:
        """Whether a spec.image may run: the configured images, or one the allowlist names."""
        allowed = self.allowed_images or (self.cpu_image, self.cuda_image)
        return any(
            image.startswith(a[:-1]) if a.endswith("*") else image == a
            for a in (*allowed, self.cpu_image, self.cuda_image)
        )

    def service_account_for(self, namespace: str) -> str | None:
        """The ServiceAccount of workload pods in ``namespace``."""
        return dict(self.namespace_service_accounts).get(namespace, self.service_account)

    def image_pull_secrets_for(self, namespace: str) -> tuple[str, ...]:
        """The imagePullSecrets of workload pods in ``namespace``."""
        extra = tuple(s for ns, s in self.namespace_image_pull_secrets if ns == namespace)
        return tuple(dict.fromkeys((*self.image_pull_secrets, *extra)))

    def requests_for(self, step: str, gpus: int) -> tuple[str | None, str | None]:
        """Default (cpu, memory) requests of a step's pods (None: no default)."""
        table = {s: (cpu, memory) for s, cpu, memory in self.default_requests}
        found = table.get(f"{step}-gpu") if gpus > 0 else None
        return found or table.get(step) or (None, None)


@dataclass
class Plan:
    """The planner's answer for one resource."""

    # Manifests to create when absent (ConfigMap with the step spec, Job, Service; for a
    # FeedbackLoop also kubetune resources it owns).
    children: list[dict[str, Any]] = field(default_factory=list)
    # Merge patches of existing objects (e.g. spec.suspend of a Job, or a FeedbackLoop's
    # promotion target of any kind): apiVersion, kind, metadata.name/namespace and only the
    # fields to change.
    patches: list[dict[str, Any]] = field(default_factory=list)
    # The whole desired status (wire format, camelCase). Unset top-level fields are null, so a
    # merge patch clears what an earlier run left (completionTime, results...).
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    # Come back after this many seconds even without a change (e.g. schedules).
    requeue_after: float | None = None
    # Objects to delete (apiVersion, kind, metadata.name/namespace): still-active Jobs of runs
    # superseded by a spec change, a FeedbackLoop's resources of cycles beyond its history
    # limit. Delete with propagationPolicy Background.
    deletions: list[dict[str, Any]] = field(default_factory=list)
