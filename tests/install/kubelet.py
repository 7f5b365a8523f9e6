"""A kubelet, job controller and deployment controller that really run the pods.

:class:`tests.emulator.Kubelet` moves Jobs through their lifecycle by hand; this stand-in runs
them. Started on an :class:`~tests.emulator.Emulator` handle, a background thread does what the
cluster's controllers would do, writing through the handle (resourceVersions bump and watch
events reach the operator; the emulator's request faults and hooks, meant for the operator's
calls, do not apply to it)::

    with Kubelet(emu, tmp_path) as kubelet:       # runs until the block ends
        ...                                       # apply Jobs, Deployments, Pods
        kubelet.logs("default", pod_name)         # what the container printed
        kubelet.claim_dir("default", "data")      # the files of a PersistentVolumeClaim
        kubelet.kill("kubetune-system", pod_name) # SIGKILL the container (it restarts)

* **job controller** (batch/v1): a Pod per missing completion (labels ``job-name``,
  ``batch.kubernetes.io/job-name``, ``controller-uid``, ``batch.kubernetes.io/controller-uid``,
  a controller ownerReference; Indexed Jobs get ``batch.kubernetes.io/job-completion-index``),
  ``backoffLimit`` with a short exponential delay between attempts, ``podFailurePolicy``
  (``FailJob``/``Ignore``/``Count`` on exit codes and pod conditions),
  ``activeDeadlineSeconds``, ``suspend``, ``ttlSecondsAfterFinished``; its status as the
  1.31+ controller writes it: ``active``/``ready``/``succeeded``/``failed``, ``startTime``,
  ``SuccessCriteriaMet`` then ``Complete`` (with ``completionTime``), ``FailureTarget`` then
  ``Failed``; Events ``SuccessfulCreate``, ``Completed``, ``BackoffLimitExceeded``...
* **deployment controller** (apps/v1): ``replicas`` Pods per Deployment (owned by the Deployment
  directly: there are no ReplicaSets; named ``<deployment>-<template hash>-<5 chars>``),
  replaced when deleted, replaced all at once when the template changes (whatever the
  strategy), and the status ``kubectl rollout status`` reads.
* **kubelet**: a pod's "pause" sandbox holds its network namespace (the API server's port is
  forwarded in; the containers' ports are reachable through it), and each container runs in a
  :mod:`tests.install.sandbox` (bubblewrap) that joins it, so a pod's containers share
  ``localhost``;
  the image's ENTRYPOINT/CMD/ENV/USER/WORKDIR from ``images/*.Dockerfile``
  (:mod:`tests.install.images`; an unknown image is ``ErrImagePull``), ``command``/``args``
  with ``$(VAR)`` expansion, ``env`` (values, ``fieldRef``, ``resourceFieldRef``,
  ``secretKeyRef``, ``configMapKeyRef``) and ``envFrom``, ``HOSTNAME`` and the
  ``KUBERNETES_SERVICE_*`` variables, volumes materialised in a per-pod directory
  (``configMap``/``secret`` files with ``items``, ``emptyDir``, ``downwardAPI``, ``projected``,
  ``hostPath``, and ``persistentVolumeClaim``: one directory per claim shared by every pod,
  so a later pod sees an earlier pod's outputs; the claim must exist and is marked Bound),
  the service-account token/CA/namespace at ``/var/run/secrets/kubernetes.io/serviceaccount``
  unless ``automountServiceAccountToken`` is false, ``runAsUser``/``runAsGroup``/``runAsNonRoot``,
  ``readOnlyRootFilesystem``, the termination message from ``terminationMessagePath`` (4096
  bytes; ``FallbackToLogsOnError``: the last 80 lines / 2048 bytes of the log when the file is
  empty and the container failed), ``httpGet``/``tcpSocket`` readiness and liveness probes,
  ``restartPolicy`` (``Always``/``OnFailure`` restart with a short back-off, ``restartCount``,
  ``lastState``), graceful deletion (SIGTERM, SIGKILL after the grace period, capped).
  Pod status: ``Pending`` -> ``Running`` -> ``Succeeded``/``Failed`` with
  ``containerStatuses[].state`` (``waiting``/``running``/``terminated {exitCode, reason,
  message, startedAt, finishedAt}``) and the ``PodScheduled``/``Initialized``/
  ``ContainersReady``/``Ready`` conditions.

Not emulated: init containers (a pod with some is an error of the stand-in), resource limits
(every container is bounded in time instead: ``max_container_seconds``), pod-to-pod networking
(``podIP`` is a placeholder address that nothing routes to; a pod reaches only the host ports it
is given, the API server's by default), Services, node selection and taints, the ``/scale``,
``/log`` and ``/exec`` subresources (``logs()`` and ``http_get()`` stand in).
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import json
import logging
import os
import random
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.emulator import ApiError, Emulator
from tests.emulator.k8sutils import JsonDict, now_rfc3339
from tests.install.images import Image, ImageCatalog, ImageNotFound
from tests.install.sandbox import HostRelay, Mount, Sandbox, SandboxSpec, short_state_root

log = logging.getLogger(__name__)

JOBS, PODS, DEPLOYMENTS = "jobs.batch", "pods", "deployments.apps"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_TERMINATION_PATH = "/dev/termination-log"
MAX_MESSAGE_BYTES = 4096
FALLBACK_LINES, FALLBACK_BYTES = 80, 2048
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
# Holds a deleted pod (deletionTimestamp set: "Terminating") until its container has stopped,
# as the kubelet's graceful deletion does.
FINALIZER = "tests.kubetune.dev/kubelet"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


class ConfigError(Exception):
    """The container cannot be created yet: ``reason`` as the kubelet reports it (waiting)."""

    def __init__(self, reason: str, message: str, *, scheduled: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.scheduled = scheduled


# --------------------------------------------------------------------------------------------------
# Pure helpers: env, command, downward API
# --------------------------------------------------------------------------------------------------

_VAR_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.\-]*)\)")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known variables are replaced, ``$$`` is ``$``,
    unknown references stay as written."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env[name] if name in env else match.group(0)

    return _VAR_REF.sub(repl, text)


def field_value(pod: JsonDict, path: str) -> str:
    """A downward-API ``fieldRef.fieldPath`` of the pod."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    spec = pod.get("spec") or {}
    match = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.hostIP": status.get("hostIP"),
        "status.podIP": status.get("podIP"),
        "status.podIPs": status.get("podIP"),
        "status.hostIPs": status.get("hostIP"),
    }
    if path in ("metadata.labels", "metadata.annotations"):
        items = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(items.items()))
    if path not in simple:
        raise ConfigError("CreateContainerConfigError", f"unsupported fieldPath {path!r}")
    return "" if simple[path] is None else str(simple[path])


_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {
    "": 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(text: str) -> float:
    match = _QUANTITY.match(str(text))
    if not match or match.group(2) not in _SUFFIX:
        raise ConfigError("CreateContainerConfigError", f"cannot parse quantity {text!r}")
    return float(match.group(1)) * _SUFFIX[match.group(2)]


def resource_value(container: JsonDict, ref: JsonDict) -> str:
    """A ``resourceFieldRef`` (rounded up to the divisor, as the kubelet does)."""
    kind, _, name = str(ref.get("resource", "")).partition(".")
    amounts = (container.get("resources") or {}).get(kind) or {}
    default = {"cpu": str(os.cpu_count() or 1), "memory": str(os.sysconf("SC_PHYS_PAGES") * 4096)}
    value = quantity(amounts.get(name) or default.get(name, "0"))
    divisor = quantity(ref.get("divisor") or "1")
    return str(int(-(-value // divisor)))


def container_command(container: JsonDict, image: Image, env: Mapping[str, str]) -> list[str]:
    """The argv: ``command``/``args`` over the image's ENTRYPOINT/CMD, ``$(VAR)`` expanded."""
    command = container.get("command")
    args = container.get("args")
    if command:
        argv = [*command, *(args or [])]
    elif args is not None:
        argv = [*image.entrypoint, *args]
    else:
        argv = [*image.entrypoint, *image.cmd]
    if not argv:
        raise ConfigError("CreateContainerError", "no command specified")
    return [expand(str(a), env) for a in argv]


def fallback_message(log_text: str) -> str:
    """What FallbackToLogsOnError reports: the log's last 80 lines, at most 2048 bytes."""
    lines = log_text.splitlines(keepends=True)[-FALLBACK_LINES:]
    data = "".join(lines).encode()[-FALLBACK_BYTES:]
    return data.decode(errors="replace")


def _random_suffix(n: int = 5) -> str:
    return "".join(random.choice(_NAME_CHARS) for _ in range(n))


def _condition(type_: str, status: bool, reason: str = "", message: str = "") -> JsonDict:
    now = now_rfc3339()
    cond: JsonDict = {
        "type": type_,
        "status": "True" if status else "False",
        "lastProbeTime": None,
        "lastTransitionTime": now,
    }
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def _has_condition(obj: JsonDict, type_: str) -> bool:
    return any(
        c.get("type") == type_ and c.get("status") == "True"
        for c in (obj.get("status") or {}).get("conditions") or []
    )


def owned_by(obj: JsonDict, uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])


# --------------------------------------------------------------------------------------------------
# Pods
# --------------------------------------------------------------------------------------------------


@dataclass
class ContainerRun:
    """One run of a container (restarts make new runs)."""

    restart: int
    log_path: Path
    termination_path: Path
    sandbox: Sandbox | None = None
    started_at: str = ""


@dataclass
class ContainerState:
    """One container of a pod: its runs and its entry of ``status.containerStatuses``."""

    spec: JsonDict
    runs: list[ContainerRun] = field(default_factory=list)
    status: JsonDict = field(default_factory=dict)
    done: bool = False
    exit_code: int | None = None

    @property
    def current(self) -> ContainerRun | None:
        return self.runs[-1] if self.runs else None


@dataclass
class PodRuntime:
    """The kubelet's state of one pod it runs."""

    namespace: str
    name: str
    uid: str
    directory: Path
    thread: threading.Thread | None = None
    containers: dict[str, ContainerState] = field(default_factory=dict)
    pause: Sandbox | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    volume_lock: threading.Lock = field(default_factory=threading.Lock)
    deleted: bool = False
    ip: str = ""
    start_time: str = ""
    unschedulable: str | None = None

    @property
    def main(self) -> ContainerState | None:
        return next(iter(self.containers.values()), None)

    @property
    def current(self) -> ContainerRun | None:
        main = self.main
        return main.current if main is not None else None

    def sandboxes(self) -> list[Sandbox]:
        found = [
            c.current.sandbox for c in self.containers.values() if c.current and c.current.sandbox
        ]
        return [*found, *([self.pause] if self.pause is not None else [])]


@dataclass
class JobState:
    """What the job controller remembers of one Job (as its tracking finalizers would)."""

    succeeded: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)
    last_failure: float = 0.0
    created: int = 0


class Kubelet:
    """The stand-in (see the module docstring). Use as a context manager or start()/stop()."""

    def __init__(
        self,
        emulator: Emulator,
        root: Path,
        *,
        images: ImageCatalog | None = None,
        node_name: str = "install-node",
        token: str | None = None,
        ca_file: Path | str | None = None,
        host_ports: Sequence[int] = (),
        poll_interval: float = 0.1,
        job_backoff: float = 0.5,
        restart_backoff: float = 1.0,
        max_restart_backoff: float = 10.0,
        max_container_seconds: float = 600.0,
        max_grace_seconds: float = 10.0,
    ) -> None:
        self.emulator = emulator
        self.root = Path(root)
        self.images = images or ImageCatalog()
        self.node_name = node_name
        url = urllib.parse.urlsplit(emulator.url)
        self.api_port = int(url.port or (443 if url.scheme == "https" else 80))
        self.token = token
        self.ca_file = Path(ca_file) if ca_file else None
        self.host_ports = [self.api_port, *host_ports]
        self.poll_interval = poll_interval
        self.job_backoff = job_backoff
        self.restart_backoff = restart_backoff
        self.max_restart_backoff = max_restart_backoff
        self.max_container_seconds = max_container_seconds
        self.max_grace_seconds = max_grace_seconds
        self.errors: list[str] = []
        self._pods: dict[str, PodRuntime] = {}
        self._jobs: dict[str, JobState] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state_root = short_state_root()
        self._relay = HostRelay(self._state_root)
        self._ip_counter = 10

    # --- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Kubelet:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the controllers and kill every container (their process groups)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            runtimes = list(self._pods.values())
        for runtime in runtimes:
            runtime.stop.set()
            for sandbox in runtime.sandboxes():
                sandbox.kill()
        for runtime in runtimes:
            if runtime.thread is not None:
                runtime.thread.join(timeout=15)
        self._relay.close()
        shutil.rmtree(self._state_root, ignore_errors=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for step in (self._sync_deployments, self._sync_jobs, self._sync_pods):
                try:
                    step()
                except Exception as exc:  # recorded for the tests: the stand-in must not fail
                    log.exception("kubelet: %s failed", step.__name__)
                    self._record(f"{step.__name__}: {type(exc).__name__}: {exc}")
            self._stop.wait(self.poll_interval)

    def _record(self, error: str) -> None:
        if error not in self.errors:
            self.errors.append(error)

    # --- public helpers -----------------------------------------------------------------------

    def claim_dir(self, namespace: str, claim: str) -> Path:
        """The directory backing a PersistentVolumeClaim (created on first use)."""
        path = self.root / "pvc" / namespace / claim
        path.mkdir(parents=True, exist_ok=True)
        return path

    def runtime(self, namespace: str, pod: str) -> PodRuntime:
        with self._lock:
            for runtime in self._pods.values():
                if (runtime.namespace, runtime.name) == (namespace, pod):
                    return runtime
        raise LookupError(f"the kubelet does not run pod {namespace}/{pod}")

    def _container(self, namespace: str, pod: str, container: str | None) -> ContainerState:
        runtime = self.runtime(namespace, pod)
        found = runtime.containers.get(container) if container else runtime.main
        if found is None:
            raise LookupError(f"pod {namespace}/{pod} has no container {container or ''}")
        return found

    def logs(
        self, namespace: str, pod: str, container: str | None = None, *, previous: bool = False
    ) -> str:
        """A container's output (the first container by default; the previous run with
        ``previous``)."""
        runs = self._container(namespace, pod, container).runs
        if not runs or (previous and len(runs) < 2):
            return ""
        run = runs[-2] if previous else runs[-1]
        return run.log_path.read_text(errors="replace") if run.log_path.exists() else ""

    def sandbox(self, namespace: str, pod: str, container: str | None = None) -> Sandbox:
        """The sandbox of a container's current run."""
        run = self._container(namespace, pod, container).current
        if run is None or run.sandbox is None:
            raise LookupError(f"pod {namespace}/{pod} runs no container")
        return run.sandbox

    def http_get(
        self, namespace: str, pod: str, port: int, path: str, timeout: float = 2.0
    ) -> tuple[int, bytes]:
        """``GET path`` on one of the pod's ports, as the kubelet's probes reach it."""
        pause = self.runtime(namespace, pod).pause
        if pause is None:
            raise LookupError(f"pod {namespace}/{pod} is not running")
        return pause.http_get(port, path, timeout)

    def kill(self, namespace: str, pod: str, container: str | None = None) -> None:
        """SIGKILL a container (the first by default; all its processes), as an OOM kill or a
        crash would; the pod's restart policy decides what happens next."""
        run = self._container(namespace, pod, container).current
        if run is not None and run.sandbox is not None:
            run.sandbox.kill()

    def running_processes(self) -> int:
        """How many sandboxes (containers and pods' pause processes) run now."""
        with self._lock:
            runtimes = list(self._pods.values())
        return sum(1 for r in runtimes for s in r.sandboxes() if s.poll() is None)

    # --- events -------------------------------------------------------------------------------

    def event(
        self, obj: JsonDict, type_: str, reason: str, message: str, component: str = "kubelet"
    ) -> None:
        meta = obj["metadata"]
        now = now_rfc3339()
        body = {
            "metadata": {
                "name": f"{meta['name']}.{random.getrandbits(64):016x}",
                "namespace": meta.get("namespace") or "default",
            },
            "involvedObject": {
                "apiVersion": obj.get("apiVersion"),
                "kind": obj.get("kind"),
                "name": meta["name"],
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
            },
            "type": type_,
            "reason": reason,
            "message": message,
            "source": {"component": component, "host": self.node_name},
            "reportingComponent": component,
            "reportingInstance": self.node_name,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        with contextlib.suppress(ApiError, KeyError):
            self.emulator.create("events", body)

    # ==========================================================================================
    # Deployment controller
    # ==========================================================================================

    def _sync_deployments(self) -> None:
        for deployment in self.emulator.objects(DEPLOYMENTS):
            self._sync_deployment(deployment)

    def _sync_deployment(self, deployment: JsonDict) -> None:
        meta, spec = deployment["metadata"], deployment.get("spec") or {}
        namespace, uid = meta["namespace"], meta["uid"]
        if meta.get("deletionTimestamp"):
            return
        replicas = int(spec.get("replicas", 1))
        template = spec.get("template") or {}
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
        template_hash = "".join(_NAME_CHARS[int(c, 16) % len(_NAME_CHARS)] for c in digest[:10])
        owned = [p for p in self.emulator.objects(PODS, namespace) if owned_by(p, uid)]
        pods = [p for p in owned if not p["metadata"].get("deletionTimestamp")]
        old_terminating = [
            p
            for p in owned
            if p["metadata"].get("deletionTimestamp")
            and p["metadata"].get("labels", {}).get("pod-template-hash") != template_hash
        ]
        live = [
            p for p in pods if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        outdated = [
            p
            for p in live
            if p["metadata"].get("labels", {}).get("pod-template-hash") != template_hash
        ]
        for pod in outdated:  # Recreate: the old pods go before the new ones start
            self._delete_pod(pod, "Deleted pod for a new template")
        if outdated or old_terminating:
            return  # Recreate: the new pods start once the old ones are gone
        for pod in pods:
            if pod not in live:  # a pod that ended: replaced
                self._delete_pod(pod, "Deleted finished pod")
        for pod in live[replicas:]:
            self._delete_pod(pod, "Scaled down")
        for _ in range(replicas - len(live)):
            self._create_deployment_pod(deployment, template, template_hash)
        ready = sum(1 for p in live[:replicas] if _has_condition(p, "Ready"))
        status = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": min(len(live), replicas) or None,
            "updatedReplicas": min(len(live), replicas) or None,
            "readyReplicas": ready or None,
            "availableReplicas": ready or None,
            "unavailableReplicas": (replicas - ready) or None,
        }
        available = ready >= replicas
        old = deployment.get("status") or {}
        conditions = [
            _keep_transition(
                old,
                _condition(
                    "Available",
                    available,
                    "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
                    "Deployment has minimum availability."
                    if available
                    else "Deployment does not have minimum availability.",
                ),
            ),
            _keep_transition(
                old,
                _condition(
                    "Progressing",
                    True,
                    "NewReplicaSetAvailable" if available else "ReplicaSetUpdated",
                    f'ReplicaSet "{meta["name"]}-{template_hash}" has successfully progressed.'
                    if available
                    else f'ReplicaSet "{meta["name"]}-{template_hash}" is progressing.',
                ),
            ),
        ]
        status["conditions"] = conditions
        if _status_differs(old, status):
            with contextlib.suppress(ApiError):
                self.emulator.patch_status(DEPLOYMENTS, namespace, meta["name"], status)

    def _create_deployment_pod(self, deployment: JsonDict, template: JsonDict, digest: str) -> None:
        meta = deployment["metadata"]
        tmeta = template.get("metadata") or {}
        name = f"{meta['name']}-{digest}-{_random_suffix()}"
        pod: JsonDict = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": meta["namespace"],
                "labels": {**(tmeta.get("labels") or {}), "pod-template-hash": digest},
                "annotations": dict(tmeta.get("annotations") or {}),
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": copy.deepcopy(template.get("spec") or {}),
        }
        pod["spec"].setdefault("restartPolicy", "Always")
        created = self.emulator.create(PODS, pod)
        self.event(
            deployment,
            "Normal",
            "SuccessfulCreate",
            f"Created pod: {name}",
            "deployment-controller",
        )
        log.info("deployment controller: created pod %s", created["metadata"]["name"])

    def _delete_pod(self, pod: JsonDict, why: str) -> None:
        meta = pod["metadata"]
        log.info("controller: deleting pod %s/%s (%s)", meta["namespace"], meta["name"], why)
        with contextlib.suppress(ApiError):
            self.emulator.delete(PODS, meta["namespace"], meta["name"])

    # ==========================================================================================
    # Job controller
    # ==========================================================================================

    def _sync_jobs(self) -> None:
        for job in self.emulator.objects(JOBS):
            self._sync_job(job)

    def _sync_job(self, job: JsonDict) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        namespace, uid = meta["namespace"], meta["uid"]
        status = job.get("status") or {}
        if meta.get("deletionTimestamp"):
            return
        if _has_condition(job, "Complete") or _has_condition(job, "Failed"):
            self._expire(job)
            return
        state = self._jobs.setdefault(uid, JobState())
        pods = [
            p
            for p in self.emulator.objects(
                PODS, namespace, labels=f"batch.kubernetes.io/controller-uid={uid}"
            )
            if owned_by(p, uid)
        ]
        active = [
            p
            for p in pods
            if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")
        ]
        terminating = [p for p in pods if p["metadata"].get("deletionTimestamp")]
        conditions = list(status.get("conditions") or [])
        patch: JsonDict = {}

        # suspend / resume
        suspended = bool(spec.get("suspend"))
        if suspended:
            for pod in active:
                self._delete_pod(pod, "Job suspended")
            if not _has_condition(job, "Suspended"):
                conditions = _set_condition(
                    conditions, _condition("Suspended", True, "JobSuspended", "Job suspended")
                )
                self.event(job, "Normal", "Suspended", "Job suspended", "job-controller")
                self._write_job(job, {"conditions": conditions, "active": None, "ready": 0})
            return
        if _has_condition(job, "Suspended"):
            conditions = _set_condition(
                conditions, _condition("Suspended", False, "JobResumed", "Job resumed")
            )
            patch["startTime"] = now_rfc3339()
            self.event(job, "Normal", "Resumed", "Job resumed", "job-controller")
        elif not status.get("startTime"):
            patch["startTime"] = now_rfc3339()
        start_time = patch.get("startTime") or status.get("startTime")

        # count finished pods once each (the tracking finalizers' job)
        fail_job: tuple[str, str] | None = None
        for pod in pods:
            pod_uid, phase = pod["metadata"]["uid"], (pod.get("status") or {}).get("phase")
            if phase == "Succeeded" and pod_uid not in state.succeeded:
                state.succeeded.add(pod_uid)
            elif phase == "Failed" and pod_uid not in state.failed | state.ignored:
                action, message = self._failure_policy(spec, pod)
                if action == "Ignore":
                    state.ignored.add(pod_uid)
                    continue
                state.failed.add(pod_uid)
                state.last_failure = time.monotonic()
                if action == "FailJob":
                    fail_job = ("PodFailurePolicy", message)
        succeeded, failed = len(state.succeeded), len(state.failed)
        completions = int(spec.get("completions", 1) or 1)
        parallelism = int(spec.get("parallelism", 1) or 1)
        backoff_limit = int(spec.get("backoffLimit", 6))
        if fail_job is None and failed > backoff_limit:
            fail_job = ("BackoffLimitExceeded", "Job has reached the specified backoff limit")
        deadline = spec.get("activeDeadlineSeconds")
        if fail_job is None and deadline is not None and start_time:
            started = _parse_time(start_time)
            if started is not None and time.time() - started > float(deadline):
                fail_job = ("DeadlineExceeded", "Job was active longer than specified deadline")

        ready = sum(1 for p in active if _has_condition(p, "Ready"))
        patch.update(
            {
                "active": len(active) or None,
                "ready": ready,
                "succeeded": succeeded or None,
                "failed": failed or None,
                "uncountedTerminatedPods": {},
            }
        )
        if spec.get("completionMode") == "Indexed":
            done = sorted(
                int(p["metadata"].get("annotations", {}).get(COMPLETION_INDEX, 0))
                for p in pods
                if p["metadata"]["uid"] in state.succeeded
            )
            if done:
                patch["completedIndexes"] = _ranges(done)

        if fail_job is not None or _has_condition(job, "FailureTarget"):
            reason, message = fail_job or _condition_reason(job, "FailureTarget")
            if not _has_condition(job, "FailureTarget"):
                conditions = _set_condition(
                    conditions, _condition("FailureTarget", True, reason, message)
                )
                patch["conditions"] = conditions
                self._write_job(job, patch)
                for pod in active:
                    self._delete_pod(pod, reason)
                return  # Failed follows once the pods have terminated
            for pod in active:
                self._delete_pod(pod, reason)
            if active or terminating:
                patch["terminating"] = len(active) + len(terminating)
                self._write_job(job, patch)
                return
            patch["terminating"] = None
            conditions = _set_condition(conditions, _condition("Failed", True, reason, message))
            patch.update({"conditions": conditions, "active": None, "ready": 0})
            self._write_job(job, patch)
            self.event(job, "Warning", reason, message, "job-controller")
            return

        if succeeded >= completions:
            if not _has_condition(job, "SuccessCriteriaMet"):
                cond = _condition(
                    "SuccessCriteriaMet",
                    True,
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                )
                patch["conditions"] = _set_condition(conditions, cond)
                self._write_job(job, patch)
                return  # Complete follows on the next pass, as in 1.31+
            cond = _condition(
                "Complete", True, "CompletionsReached", "Reached expected number of succeeded pods"
            )
            patch.update(
                {"conditions": _set_condition(conditions, cond), "completionTime": now_rfc3339()}
            )
            self._write_job(job, patch)
            self.event(job, "Normal", "Completed", "Job completed", "job-controller")
            return

        # start pods for the missing completions, after the back-off of earlier failures
        if failed and time.monotonic() - state.last_failure < self.job_backoff * 2 ** (failed - 1):
            want = 0
        else:
            want = min(parallelism, completions - succeeded) - len(active)
        if want > 0:
            busy = {p["metadata"].get("annotations", {}).get(COMPLETION_INDEX) for p in active} | {
                p["metadata"].get("annotations", {}).get(COMPLETION_INDEX)
                for p in pods
                if p["metadata"]["uid"] in state.succeeded
            }
            for _ in range(want):
                index = None
                if spec.get("completionMode") == "Indexed":
                    index = next(str(i) for i in range(completions) if str(i) not in busy)
                    busy.add(index)
                self._create_job_pod(job, index)
                patch["active"] = (patch.get("active") or 0) + 1
        patch["conditions"] = conditions if conditions != (status.get("conditions") or []) else None
        if patch["conditions"] is None:
            patch.pop("conditions")
        self._write_job(job, patch)

    def _failure_policy(self, spec: JsonDict, pod: JsonDict) -> tuple[str, str]:
        """The podFailurePolicy action for a failed pod (Count when no rule matches)."""
        meta = pod["metadata"]
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        rules = (spec.get("podFailurePolicy") or {}).get("rules") or []
        for index, rule in enumerate(rules):
            on_codes = rule.get("onExitCodes")
            if on_codes:
                for cs in statuses:
                    if on_codes.get("containerName") not in (None, cs.get("name")):
                        continue
                    code = ((cs.get("state") or {}).get("terminated") or {}).get("exitCode")
                    if code in (None, 0):
                        continue
                    values = set(on_codes.get("values") or [])
                    hit = code in values if on_codes.get("operator") == "In" else code not in values
                    if hit:
                        message = (
                            f"Container {cs.get('name')} for pod {meta['namespace']}/{meta['name']}"
                            f" failed with exit code {code} matching {rule['action']} rule at"
                            f" index {index}"
                        )
                        return str(rule["action"]), message
            for pattern in rule.get("onPodConditions") or []:
                for cond in (pod.get("status") or {}).get("conditions") or []:
                    if cond.get("type") == pattern.get("type") and cond.get(
                        "status"
                    ) == pattern.get("status", "True"):
                        message = (
                            f"Pod {meta['namespace']}/{meta['name']} has condition"
                            f" {cond['type']} matching {rule['action']} rule at index {index}"
                        )
                        return str(rule["action"]), message
        return "Count", ""

    def _create_job_pod(self, job: JsonDict, index: str | None) -> None:
        meta, spec = job["metadata"], job.get("spec") or {}
        template = copy.deepcopy(spec.get("template") or {})
        tmeta = template.get("metadata") or {}
        uid, job_name = meta["uid"], meta["name"]
        labels = {
            **(tmeta.get("labels") or {}),
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": job_name,
            "controller-uid": uid,
            "job-name": job_name,
        }
        annotations = dict(tmeta.get("annotations") or {})
        pod_spec = template.get("spec") or {}
        prefix = f"{job_name}-"
        if index is not None:
            labels[COMPLETION_INDEX] = index
            annotations[COMPLETION_INDEX] = index
            prefix = f"{job_name}-{index}-"
            if pod_spec.get("subdomain"):
                pod_spec.setdefault("hostname", f"{job_name}-{index}")
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": prefix + _random_suffix(),
                "namespace": meta["namespace"],
                "labels": labels,
                "annotations": annotations,
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": job_name,
                        "uid": uid,
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": pod_spec,
        }
        created = self.emulator.create(PODS, pod)
        self._jobs[uid].created += 1
        self.event(
            job,
            "Normal",
            "SuccessfulCreate",
            f"Created pod: {created['metadata']['name']}",
            "job-controller",
        )

    def _write_job(self, job: JsonDict, patch: JsonDict) -> None:
        if not _status_differs(job.get("status") or {}, patch):
            return
        meta = job["metadata"]
        with contextlib.suppress(ApiError):
            self.emulator.patch_status(JOBS, meta["namespace"], meta["name"], patch)

    def _expire(self, job: JsonDict) -> None:
        """The TTL-after-finished controller."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        finished = (job.get("status") or {}).get("completionTime") or _condition_time(job)
        when = _parse_time(finished) if finished else None
        if ttl is None or when is None or time.time() < when + float(ttl):
            return
        meta = job["metadata"]
        with contextlib.suppress(ApiError):
            self.emulator.delete(JOBS, meta["namespace"], meta["name"])

    # ==========================================================================================
    # Kubelet
    # ==========================================================================================

    def _sync_pods(self) -> None:
        pods = {p["metadata"]["uid"]: p for p in self.emulator.objects(PODS)}
        with self._lock:
            known = dict(self._pods)
        for uid, runtime in known.items():
            pod = pods.get(uid)
            if pod is None or pod["metadata"].get("deletionTimestamp"):
                if not runtime.deleted:
                    runtime.deleted = True
                    runtime.stop.set()  # the pod's thread terminates the container gracefully
                if pod is not None and (runtime.thread is None or not runtime.thread.is_alive()):
                    self._release(pod)
        for uid, pod in pods.items():
            if uid in known:
                continue
            node = (pod.get("spec") or {}).get("nodeName")
            phase = (pod.get("status") or {}).get("phase")
            if node not in (None, "", self.node_name) or phase in ("Succeeded", "Failed"):
                continue
            meta = pod["metadata"]
            directory = self.root / "pods" / meta["namespace"] / meta["name"]
            runtime = PodRuntime(meta["namespace"], meta["name"], uid, directory)
            self._ip_counter += 1
            runtime.ip = f"10.88.{self._ip_counter // 250}.{self._ip_counter % 250 + 2}"
            runtime.thread = threading.Thread(
                target=self._run_pod, args=(runtime,), name=f"pod-{meta['name']}", daemon=True
            )
            finalizers = [*(meta.get("finalizers") or []), FINALIZER]
            try:
                self.emulator.patch(
                    PODS, meta["namespace"], meta["name"], {"metadata": {"finalizers": finalizers}}
                )
            except ApiError:
                continue  # deleted meanwhile
            with self._lock:
                self._pods[uid] = runtime
            runtime.thread.start()

    def _release(self, pod: JsonDict) -> None:
        """Let a deleted pod go once its container has stopped."""
        meta = pod["metadata"]
        finalizers = meta.get("finalizers") or []
        if FINALIZER not in finalizers:
            return
        remaining = [f for f in finalizers if f != FINALIZER]
        with contextlib.suppress(ApiError):
            self.emulator.patch(
                PODS,
                meta["namespace"],
                meta["name"],
                {"metadata": {"finalizers": remaining or None}},
            )

    # --- one pod ------------------------------------------------------------------------------

    def _get_pod(self, runtime: PodRuntime) -> JsonDict | None:
        pod = self.emulator.get(PODS, runtime.namespace, runtime.name)
        if pod is None or pod["metadata"]["uid"] != runtime.uid:
            return None
        return pod

    def _run_pod(self, runtime: PodRuntime) -> None:
        try:
            self._run_pod_inner(runtime)
        except Exception as exc:
            log.exception("kubelet: pod %s/%s", runtime.namespace, runtime.name)
            self._record(f"pod {runtime.namespace}/{runtime.name}: {type(exc).__name__}: {exc}")
        finally:
            if runtime.pause is not None:
                runtime.pause.terminate(1.0)
            pod = self.emulator.get(PODS, runtime.namespace, runtime.name)
            if (
                pod is not None
                and pod["metadata"].get("deletionTimestamp")
                and pod["metadata"]["uid"] == runtime.uid
            ):
                self._release(pod)

    def _run_pod_inner(self, runtime: PodRuntime) -> None:
        pod = self._get_pod(runtime)
        if pod is None:
            return
        spec = pod.get("spec") or {}
        containers = spec.get("containers") or []
        if not containers or spec.get("initContainers"):
            self._record(f"pod {runtime.name}: no containers, or init containers (not emulated)")
            return
        if not spec.get("nodeName"):
            with contextlib.suppress(ApiError):
                self.emulator.patch(
                    PODS, runtime.namespace, runtime.name, {"spec": {"nodeName": self.node_name}}
                )
            self.event(
                pod,
                "Normal",
                "Scheduled",
                f"Successfully assigned {runtime.namespace}/{runtime.name} to {self.node_name}",
                "default-scheduler",
            )
        for container in containers:
            name = container.get("name", "main")
            runtime.containers[name] = ContainerState(
                container,
                status=self._container_status(
                    container, False, {"waiting": {"reason": "ContainerCreating"}}, 0, {}
                ),
            )
        # the pod's volumes and claims must be there before its sandbox starts
        while not runtime.stop.is_set():
            try:
                with runtime.volume_lock:
                    self._volumes(runtime, pod, containers[0])
                break
            except ConfigError as exc:
                self._waiting(runtime, pod, containers[0], exc)
                runtime.stop.wait(1.0)
                pod = self._get_pod(runtime)
                if pod is None:
                    return
        if runtime.stop.is_set():
            return
        runtime.unschedulable = None
        ports: list[int] = []
        for container in containers:
            for port in _container_ports(container):
                if port not in ports:
                    ports.append(port)
        state_dir = self._state_root / f"{runtime.uid[:8]}-pause"
        state_dir.mkdir(parents=True, exist_ok=True)
        pause_spec = SandboxSpec(
            argv=[],
            env={},
            hostname=spec.get("hostname") or runtime.name,
            host_ports=self.host_ports,
            exposed_ports=ports,
        )
        runtime.pause = Sandbox(pause_spec, self._relay, state_dir, subprocess.DEVNULL)
        runtime.pause.start()
        netns = runtime.pause.init_pid()
        runtime.start_time = now_rfc3339()
        threads = [
            threading.Thread(
                target=self._container_loop,
                args=(runtime, name, netns),
                name=f"{runtime.name}/{name}",
                daemon=True,
            )
            for name in runtime.containers
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _container_loop(self, runtime: PodRuntime, name: str, netns: int) -> None:
        try:
            self._container_loop_inner(runtime, name, netns)
        except Exception as exc:
            log.exception("kubelet: container %s/%s/%s", runtime.namespace, runtime.name, name)
            self._record(f"container {runtime.name}/{name}: {type(exc).__name__}: {exc}")

    def _container_loop_inner(self, runtime: PodRuntime, name: str, netns: int) -> None:
        state = runtime.containers[name]
        container = state.spec
        restart_count = 0
        last_state: JsonDict = {}
        while not runtime.stop.is_set():
            pod = self._get_pod(runtime)
            if pod is None:
                return
            restart_policy = (pod.get("spec") or {}).get("restartPolicy", "Always")
            try:
                spec, run = self._prepare(runtime, pod, container, restart_count, netns)
            except ConfigError as exc:
                self._waiting(runtime, pod, container, exc, restart_count)
                runtime.stop.wait(1.0)
                continue
            if restart_count == 0:
                self.event(
                    pod,
                    "Normal",
                    "Pulled",
                    f'Container image "{container.get("image")}" already present on machine',
                )
            self.event(pod, "Normal", "Created", f"Created container {name}")
            exit_code, message, reason = self._run_container(
                runtime, pod, state, spec, run, restart_count, last_state
            )
            terminated = {
                "exitCode": exit_code,
                "reason": reason,
                "startedAt": run.started_at or now_rfc3339(),
                "finishedAt": now_rfc3339(),
                "containerID": f"bwrap://{runtime.uid}-{name}-{restart_count}",
            }
            if message:
                terminated["message"] = message
            if runtime.deleted:
                return
            restart = restart_policy == "Always" or (
                restart_policy == "OnFailure" and exit_code != 0
            )
            if not restart:
                state.exit_code = exit_code
                state.done = True
                state.status = self._container_status(
                    container, False, {"terminated": terminated}, restart_count, last_state
                )
                self._publish(runtime)
                return
            last_state = {"terminated": terminated}
            delay = min(self.restart_backoff * 2**restart_count, self.max_restart_backoff)
            restart_count += 1
            waiting = {
                "waiting": {
                    "reason": "CrashLoopBackOff",
                    "message": f"back-off {delay:g}s restarting failed container={name}"
                    f" pod={runtime.name}_{runtime.namespace}({runtime.uid})",
                }
            }
            state.status = self._container_status(
                container, False, waiting, restart_count, last_state
            )
            self._publish(runtime)
            self.event(pod, "Warning", "BackOff", f"Back-off restarting failed container {name}")
            runtime.stop.wait(delay)

    def _publish(self, runtime: PodRuntime) -> None:
        """Write the pod's status from its containers' (phase, conditions, IPs)."""
        with runtime.lock:
            states = list(runtime.containers.values())
            statuses = [s.status for s in states]
            if runtime.unschedulable is not None:
                self._pod_status(
                    runtime,
                    {
                        "phase": "Pending",
                        "conditions": [
                            _condition(
                                "PodScheduled", False, "Unschedulable", runtime.unschedulable
                            )
                        ],
                    },
                )
                return
            status: JsonDict = {"hostIP": "127.0.0.1", "containerStatuses": statuses}
            if all(s.done for s in states):
                failed = any(s.exit_code != 0 for s in states)
                reason = "PodFailed" if failed else "PodCompleted"
                status["phase"] = "Failed" if failed else "Succeeded"
                status["conditions"] = [
                    _condition("PodReadyToStartContainers", False),
                    _condition("Initialized", True, reason),
                    _condition("Ready", False, reason),
                    _condition("ContainersReady", False, reason),
                    _condition("PodScheduled", True),
                ]
            else:
                started = any(
                    "running" in s["state"] or s["restartCount"] or "terminated" in s["state"]
                    for s in statuses
                )
                status["phase"] = "Running" if started else "Pending"
                ready = all(s["ready"] for s in statuses)
                status["conditions"] = self._running_conditions(ready)
            if runtime.start_time:
                status |= {
                    "podIP": runtime.ip,
                    "podIPs": [{"ip": runtime.ip}],
                    "startTime": runtime.start_time,
                }
            self._pod_status(runtime, status)

    def _pod_status(self, runtime: PodRuntime, status: JsonDict) -> JsonDict | None:
        try:
            return self.emulator.patch_status(PODS, runtime.namespace, runtime.name, status)
        except ApiError:
            return None

    def _prepare(
        self, runtime: PodRuntime, pod: JsonDict, container: JsonDict, restart: int, netns: int
    ) -> tuple[SandboxSpec, ContainerRun]:
        """Everything a run of the container needs; ConfigError while something is missing."""
        spec = pod.get("spec") or {}
        try:
            image = self.images.resolve(str(container.get("image", "")))
        except ImageNotFound as exc:
            raise ConfigError("ErrImagePull", str(exc)) from None
        runtime.directory.mkdir(parents=True, exist_ok=True)
        with runtime.volume_lock:  # containers start side by side; the volumes are the pod's
            mounts = self._volumes(runtime, pod, container)
        env = self._environment(pod, container, image)
        argv = container_command(container, image, env)
        context = {
            **(spec.get("securityContext") or {}),
            **(container.get("securityContext") or {}),
        }
        uid = context.get("runAsUser", image.uid if image.uid is not None else 0)
        gid = context.get("runAsGroup", image.gid if image.gid is not None else uid)
        if context.get("runAsNonRoot") and (uid in (None, 0)):
            raise ConfigError(
                "CreateContainerConfigError",
                "container has runAsNonRoot and image will run as root",
            )
        name = container.get("name", "main")
        run = ContainerRun(
            restart=restart,
            log_path=runtime.directory / f"{name}-{restart}.log",
            termination_path=runtime.directory / f"{name}-termination-{restart}",
        )
        run.termination_path.write_text("")
        path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_PATH
        mounts.append(Mount(path, run.termination_path))
        sandbox_spec = SandboxSpec(
            argv=argv,
            env=env,
            workdir=container.get("workingDir") or image.workdir or "/",
            mounts=mounts,
            read_only_root=bool(context.get("readOnlyRootFilesystem")),
            uid=int(uid) if uid is not None else None,
            gid=int(gid) if gid is not None else None,
            hostname=spec.get("hostname") or runtime.name,
            netns_pid=netns,
        )
        return sandbox_spec, run

    def _waiting(
        self,
        runtime: PodRuntime,
        pod: JsonDict,
        container: JsonDict,
        exc: ConfigError,
        restarts: int = 0,
    ) -> None:
        name = container.get("name", "main")
        state = runtime.containers[name]
        if not exc.scheduled:
            if runtime.unschedulable != exc.message:
                runtime.unschedulable = exc.message
                self._publish(runtime)
                self.event(pod, "Warning", "FailedScheduling", exc.message, "default-scheduler")
            return
        waiting = (state.status.get("state") or {}).get("waiting") or {}
        if waiting.get("message") == exc.message:
            return
        state.status = self._container_status(
            container,
            False,
            {"waiting": {"reason": exc.reason, "message": exc.message}},
            restarts,
            {},
        )
        self._publish(runtime)
        reason = "FailedMount" if exc.reason == "ContainerCreating" else "Failed"
        self.event(pod, "Warning", reason, exc.message)

    def _container_status(
        self, container: JsonDict, ready: bool, state: JsonDict, restarts: int, last_state: JsonDict
    ) -> JsonDict:
        return {
            "name": container.get("name", "main"),
            "image": container.get("image", ""),
            "imageID": f"images/{container.get('image', '')}",
            "ready": ready,
            "started": "running" in state,
            "restartCount": restarts,
            "state": state,
            "lastState": last_state,
        }

    def _running_conditions(self, ready: bool) -> list[JsonDict]:
        reason = "" if ready else "ContainersNotReady"
        return [
            _condition("PodReadyToStartContainers", True),
            _condition("Initialized", True),
            _condition("Ready", ready, reason),
            _condition("ContainersReady", ready, reason),
            _condition("PodScheduled", True),
        ]

    def _run_container(
        self,
        runtime: PodRuntime,
        pod: JsonDict,
        state: ContainerState,
        spec: SandboxSpec,
        run: ContainerRun,
        restarts: int,
        last_state: JsonDict,
    ) -> tuple[int, str, str]:
        """Run the container to its end; (exit code, termination message, reason)."""
        container = state.spec
        name = container.get("name", "main")
        state_dir = self._state_root / f"{runtime.uid[:8]}-{name[:20]}-{restarts}"
        state_dir.mkdir(parents=True, exist_ok=True)
        with run.log_path.open("ab") as output:
            sandbox = Sandbox(spec, self._relay, state_dir, output)
            run.sandbox = sandbox
            state.runs.append(run)
            sandbox.start()
        run.started_at = now_rfc3339()
        self.event(pod, "Normal", "Started", f"Started container {name}")
        ready = container.get("readinessProbe") is None

        def running(ready: bool) -> None:
            state.status = self._container_status(
                container, ready, {"running": {"startedAt": run.started_at}}, restarts, last_state
            )
            self._publish(runtime)

        running(ready)
        assert runtime.pause is not None
        probes = _Probes(container, runtime.pause, time.monotonic())
        deadline = time.monotonic() + self.max_container_seconds
        grace = float((pod.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
        code: int | None = None
        timed_out = False
        while code is None:
            code = sandbox.poll()
            if code is not None:
                break
            if runtime.stop.wait(0.05):
                self.event(pod, "Normal", "Killing", f"Stopping container {name}")
                code = sandbox.terminate(min(grace, self.max_grace_seconds))
                code = 137 if code is None else code
                break
            if time.monotonic() > deadline:
                timed_out = True
                sandbox.kill()
                code = sandbox.poll()
                code = 137 if code is None else code
                self._record(
                    f"pod {runtime.namespace}/{runtime.name} ran past {self.max_container_seconds}s"
                )
                break
            now_ready, live = probes.check()
            if not live:
                self.event(pod, "Warning", "Unhealthy", probes.last_failure)
                self.event(
                    pod,
                    "Normal",
                    "Killing",
                    f"Container {name} failed liveness probe, will be restarted",
                )
                code = sandbox.terminate(min(grace, self.max_grace_seconds))
                code = 137 if code is None else code
                break
            if now_ready != ready:
                ready = now_ready
                running(ready)
        if code < 0:
            code = 128 - code
        start_error = sandbox.start_error
        if start_error:
            return 128, start_error, "StartError"
        message = _read_limited(run.termination_path)
        policy = container.get("terminationMessagePolicy", "File")
        if not message and code != 0 and policy == "FallbackToLogsOnError":
            message = fallback_message(run.log_path.read_text(errors="replace"))
        reason = "Completed" if code == 0 else "Error"
        if timed_out:
            message = (
                message or f"killed by the kubelet stand-in after {self.max_container_seconds}s"
            )
        return code, message, reason

    # --- volumes and environment ---------------------------------------------------------------

    def _get(self, resource: str, namespace: str, name: str) -> JsonDict | None:
        return self.emulator.get(resource, namespace, name)

    def _volumes(self, runtime: PodRuntime, pod: JsonDict, container: JsonDict) -> list[Mount]:
        spec = pod.get("spec") or {}
        namespace = runtime.namespace
        base = runtime.directory / "volumes"
        sources: dict[str, tuple[Path, bool]] = {}
        for volume in spec.get("volumes") or []:
            name = volume["name"]
            target = base / name
            if "emptyDir" in volume:
                target.mkdir(parents=True, exist_ok=True)
                sources[name] = (target, False)
            elif "configMap" in volume:
                src = volume["configMap"]
                cm = self._get("configmaps", namespace, src["name"])
                if cm is None:
                    if src.get("optional"):
                        target.mkdir(parents=True, exist_ok=True)
                        sources[name] = (target, True)
                        continue
                    missing = f'configmap "{src["name"]}" not found'
                    raise ConfigError(
                        "ContainerCreating",
                        f'MountVolume.SetUp failed for volume "{name}" : {missing}',
                    )
                data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
                data |= {k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()}
                _write_files(target, data, src.get("items"), f'configmap "{src["name"]}"')
                sources[name] = (target, True)
            elif "secret" in volume:
                src = volume["secret"]
                secret = self._get("secrets", namespace, src["secretName"])
                if secret is None:
                    if src.get("optional"):
                        target.mkdir(parents=True, exist_ok=True)
                        sources[name] = (target, True)
                        continue
                    missing = f'secret "{src["secretName"]}" not found'
                    raise ConfigError(
                        "ContainerCreating",
                        f'MountVolume.SetUp failed for volume "{name}" : {missing}',
                    )
                _write_files(
                    target, _secret_data(secret), src.get("items"), f'secret "{src["secretName"]}"'
                )
                sources[name] = (target, True)
            elif "persistentVolumeClaim" in volume:
                src = volume["persistentVolumeClaim"]
                claim = src["claimName"]
                pvc = self._get("persistentvolumeclaims", namespace, claim)
                if pvc is None:
                    raise ConfigError(
                        "Unschedulable",
                        f'0/1 nodes are available: persistentvolumeclaim "{claim}" not found.',
                        scheduled=False,
                    )
                if (pvc.get("status") or {}).get("phase") != "Bound":
                    with contextlib.suppress(ApiError):
                        self.emulator.patch_status(
                            "persistentvolumeclaims",
                            namespace,
                            claim,
                            {
                                "phase": "Bound",
                                "accessModes": (pvc.get("spec") or {}).get("accessModes")
                                or ["ReadWriteOnce"],
                                "capacity": ((pvc.get("spec") or {}).get("resources") or {}).get(
                                    "requests"
                                )
                                or {},
                            },
                        )
                sources[name] = (self.claim_dir(namespace, claim), bool(src.get("readOnly")))
            elif "downwardAPI" in volume:
                items = volume["downwardAPI"].get("items") or []
                files = {
                    i["path"]: field_value(pod, i["fieldRef"]["fieldPath"]).encode()
                    for i in items
                    if "fieldRef" in i
                }
                _write_files(target, files, None, "downwardAPI")
                sources[name] = (target, True)
            elif "projected" in volume:
                projected: dict[str, bytes] = {}
                for source in volume["projected"].get("sources") or []:
                    projected |= self._projected(namespace, pod, source)
                _write_files(target, projected, None, "projected")
                sources[name] = (target, True)
            elif "hostPath" in volume:
                sources[name] = (Path(volume["hostPath"]["path"]), False)
            else:
                raise ConfigError("ContainerCreating", f"volume {name!r}: unsupported volume type")
        mounts: list[Mount] = []
        for mount in container.get("volumeMounts") or []:
            if mount["name"] not in sources:
                raise ConfigError(
                    "CreateContainerConfigError", f'volumeMount "{mount["name"]}" has no volume'
                )
            source, read_only = sources[mount["name"]]
            if mount.get("subPath"):
                source = source / mount["subPath"]
                if not source.exists():
                    source.mkdir(parents=True)
            mounts.append(
                Mount(mount["mountPath"], source, read_only or bool(mount.get("readOnly")))
            )
        if self._automount(pod, namespace) and not any(
            m.dest.rstrip("/") == SA_DIR for m in mounts
        ):
            target = base / "kube-api-access"
            files = self._projected(namespace, pod, {"serviceAccountToken": {"path": "token"}})
            files |= self._projected(namespace, pod, {"_ca": {}})
            files["namespace"] = namespace.encode()
            _write_files(target, files, None, "kube-api-access")
            mounts.append(Mount(SA_DIR, target, True))
        return mounts

    def _automount(self, pod: JsonDict, namespace: str) -> bool:
        spec = pod.get("spec") or {}
        if "automountServiceAccountToken" in spec:
            return bool(spec["automountServiceAccountToken"])
        account = spec.get("serviceAccountName") or "default"
        found = self._get("serviceaccounts", namespace, account)
        if found is None and account != "default":
            raise ConfigError("CreateContainerConfigError", f'serviceaccount "{account}" not found')
        if found is not None and "automountServiceAccountToken" in found:
            return bool(found["automountServiceAccountToken"])
        return True

    def _projected(self, namespace: str, pod: JsonDict, source: JsonDict) -> dict[str, bytes]:
        if "serviceAccountToken" in source:
            return {source["serviceAccountToken"].get("path", "token"): (self.token or "").encode()}
        if "_ca" in source:
            return {"ca.crt": self.ca_file.read_bytes() if self.ca_file else b""}
        if "configMap" in source:
            src = source["configMap"]
            cm = self._get("configmaps", namespace, src["name"]) or {}
            if not cm and not src.get("optional"):
                raise ConfigError("ContainerCreating", f'configmap "{src["name"]}" not found')
            data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
            items = src.get("items")
            if src["name"] == "kube-root-ca.crt" and self.ca_file:
                data["ca.crt"] = self.ca_file.read_bytes()
            return _select(data, items)
        if "secret" in source:
            src = source["secret"]
            secret = self._get("secrets", namespace, src["name"])
            if secret is None:
                if src.get("optional"):
                    return {}
                raise ConfigError("ContainerCreating", f'secret "{src["name"]}" not found')
            return _select(_secret_data(secret), src.get("items"))
        if "downwardAPI" in source:
            items = source["downwardAPI"].get("items") or []
            return {
                i["path"]: field_value(pod, i["fieldRef"]["fieldPath"]).encode()
                for i in items
                if "fieldRef" in i
            }
        raise ConfigError("ContainerCreating", f"unsupported projected source {sorted(source)}")

    def _environment(self, pod: JsonDict, container: JsonDict, image: Image) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        pod = copy.deepcopy(pod)
        status = pod.setdefault("status", {})
        runtime = self.runtime(namespace, pod["metadata"]["name"])
        status.setdefault("podIP", runtime.ip)
        status.setdefault("hostIP", "127.0.0.1")
        env = image.runtime_env()
        env["HOSTNAME"] = ((pod.get("spec") or {}).get("hostname") or pod["metadata"]["name"])[:63]
        port = str(self.api_port)
        env |= {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://127.0.0.1:{port}",
            f"KUBERNETES_PORT_{port}_TCP": f"tcp://127.0.0.1:{port}",
            f"KUBERNETES_PORT_{port}_TCP_PROTO": "tcp",
            f"KUBERNETES_PORT_{port}_TCP_PORT": port,
            f"KUBERNETES_PORT_{port}_TCP_ADDR": "127.0.0.1",
        }
        for source in container.get("envFrom") or []:
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                ref = source["configMapRef"]
                cm = self._get("configmaps", namespace, ref["name"])
                if cm is None and not ref.get("optional"):
                    raise ConfigError(
                        "CreateContainerConfigError", f'configmap "{ref["name"]}" not found'
                    )
                env |= {prefix + k: v for k, v in ((cm or {}).get("data") or {}).items()}
            elif "secretRef" in source:
                ref = source["secretRef"]
                secret = self._get("secrets", namespace, ref["name"])
                if secret is None and not ref.get("optional"):
                    raise ConfigError(
                        "CreateContainerConfigError", f'secret "{ref["name"]}" not found'
                    )
                env |= {prefix + k: v.decode() for k, v in _secret_data(secret or {}).items()}
        for var in container.get("env") or []:
            name = var["name"]
            if "valueFrom" not in var:
                env[name] = expand(str(var.get("value", "")), env)
                continue
            source = var["valueFrom"]
            if "fieldRef" in source:
                env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in source:
                env[name] = resource_value(container, source["resourceFieldRef"])
            elif "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                secret = self._get("secrets", namespace, ref["name"])
                data = _secret_data(secret) if secret else {}
                if ref["key"] not in data:
                    if ref.get("optional"):
                        continue
                    what = "secret" if secret is None else f"key {ref['key']!r} in secret"
                    raise ConfigError(
                        "CreateContainerConfigError", f'{what} "{ref["name"]}" not found'
                    )
                env[name] = data[ref["key"]].decode()
            elif "configMapKeyRef" in source:
                ref = source["configMapKeyRef"]
                cm = self._get("configmaps", namespace, ref["name"])
                values: dict[str, str] = (cm or {}).get("data") or {}
                if ref["key"] not in values:
                    if ref.get("optional"):
                        continue
                    what = "configmap" if cm is None else f"key {ref['key']!r} in configmap"
                    raise ConfigError(
                        "CreateContainerConfigError", f'{what} "{ref["name"]}" not found'
                    )
                env[name] = values[ref["key"]]
            else:
                raise ConfigError(
                    "CreateContainerConfigError", f"env {name}: unsupported valueFrom"
                )
        return env


# --------------------------------------------------------------------------------------------------
# Probes
# --------------------------------------------------------------------------------------------------


def _container_ports(container: JsonDict) -> list[int]:
    """The container's ports and those its probes use."""
    ports = [
        int(p["containerPort"]) for p in container.get("ports") or [] if p.get("containerPort")
    ]
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        port = _probe_port(container, container.get(kind) or {})
        if port is not None and port not in ports:
            ports.append(port)
    return ports


def _probe_port(container: JsonDict, probe: JsonDict) -> int | None:
    action = probe.get("httpGet") or probe.get("tcpSocket")
    if not action:
        return None
    port = action.get("port")
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port)
    for item in container.get("ports") or []:
        if item.get("name") == port:
            return int(item["containerPort"])
    return None


class _Probes:
    """httpGet/tcpSocket readiness and liveness probes with their timing settings."""

    def __init__(self, container: JsonDict, sandbox: Sandbox, started: float) -> None:
        self.container = container
        self.sandbox = sandbox
        self.started = started
        self.ready = container.get("readinessProbe") is None
        self.next: dict[str, float] = {}
        self.failures: dict[str, int] = {}
        self.successes: dict[str, int] = {}
        self.last_failure = ""

    def check(self) -> tuple[bool, bool]:
        """(ready, alive) after running the probes that are due."""
        alive = True
        now = time.monotonic()
        for kind in ("readinessProbe", "livenessProbe"):
            probe = self.container.get(kind)
            if not probe:
                continue
            due = self.next.get(kind, self.started + float(probe.get("initialDelaySeconds", 0)))
            if now < due:
                continue
            self.next[kind] = now + float(probe.get("periodSeconds", 10))
            ok = self._probe(probe)
            if ok:
                self.failures[kind] = 0
                self.successes[kind] = self.successes.get(kind, 0) + 1
            else:
                self.successes[kind] = 0
                self.failures[kind] = self.failures.get(kind, 0) + 1
            threshold = int(probe.get("failureThreshold", 3))
            if kind == "readinessProbe":
                if ok and self.successes[kind] >= int(probe.get("successThreshold", 1)):
                    self.ready = True
                elif self.failures[kind] >= threshold:
                    self.ready = False
            elif self.failures[kind] >= threshold:
                alive = False
        return self.ready, alive

    def _probe(self, probe: JsonDict) -> bool:
        port = _probe_port(self.container, probe)
        timeout = float(probe.get("timeoutSeconds", 1))
        if port is None:
            self.last_failure = "Probe failed: no port"
            return False
        try:
            if "httpGet" in probe:
                status, _ = self.sandbox.http_get(port, probe["httpGet"].get("path", "/"), timeout)
                if 200 <= status < 400:
                    return True
                self.last_failure = f"Probe failed: HTTP probe failed with statuscode: {status}"
                return False
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            with sock:
                sock.connect(str(self.sandbox.port_socket(port)))
                sock.sendall(b"")
            return True
        except OSError as exc:
            self.last_failure = f"Probe failed: {exc}"
            return False


# --------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------


def _secret_data(secret: JsonDict) -> dict[str, bytes]:
    data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    data |= {k: str(v).encode() for k, v in (secret.get("stringData") or {}).items()}
    return data


def _select(data: Mapping[str, bytes], items: Sequence[JsonDict] | None) -> dict[str, bytes]:
    if not items:
        return dict(data)
    selected: dict[str, bytes] = {}
    for item in items:
        if item["key"] not in data:
            if item.get("optional"):
                continue
            raise ConfigError("ContainerCreating", f"key {item['key']!r} not found")
        selected[str(item.get("path") or item["key"])] = data[item["key"]]
    return selected


def _write_files(
    target: Path, data: Mapping[str, bytes], items: Sequence[JsonDict] | None, what: str
) -> None:
    try:
        files = _select(data, items)
    except ConfigError as exc:
        raise ConfigError("ContainerCreating", f"{what}: {exc.message}") from None
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for relative, content in files.items():
        path = target / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(0o644)


def _read_limited(path: Path) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        return handle.read(MAX_MESSAGE_BYTES).decode(errors="replace")


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    import datetime

    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _condition_time(job: JsonDict) -> str | None:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed") and cond.get("status") == "True":
            return str(cond.get("lastTransitionTime"))
    return None


def _condition_reason(job: JsonDict, type_: str) -> tuple[str, str]:
    for cond in (job.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            return str(cond.get("reason", "")), str(cond.get("message", ""))
    return "", ""


def _set_condition(conditions: list[JsonDict], new: JsonDict) -> list[JsonDict]:
    out = [c for c in conditions if c.get("type") != new["type"]]
    for old in conditions:
        if old.get("type") == new["type"] and old.get("status") == new["status"]:
            new = {**new, "lastTransitionTime": old.get("lastTransitionTime")}
    out.append(new)
    return out


def _keep_transition(old_status: JsonDict, new: JsonDict) -> JsonDict:
    for old in old_status.get("conditions") or []:
        if old.get("type") == new["type"] and old.get("status") == new["status"]:
            return {**new, "lastTransitionTime": old.get("lastTransitionTime")}
    return new


def _status_differs(old: Mapping[str, Any], patch: Mapping[str, Any]) -> bool:
    for key, value in patch.items():
        current = old.get(key)
        if key == "conditions" and isinstance(value, list):
            if _without_times(value) != _without_times(current):
                return True
        elif value is None:
            if current not in (None, 0):
                return True
        elif current != value:
            return True
    return False


def _without_times(conditions: Any) -> list[JsonDict]:
    times = ("lastTransitionTime", "lastProbeTime", "lastUpdateTime")
    return [{k: v for k, v in c.items() if k not in times} for c in conditions or []]


def _ranges(indexes: Sequence[int]) -> str:
    """``[0, 1, 2, 4]`` -> ``0-2,4`` (completedIndexes)."""
    parts: list[str] = []
    start = prev = indexes[0]
    for i in [*indexes[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(parts)


__all__ = [
    "ConfigError",
    "Kubelet",
    "container_command",
    "expand",
    "fallback_message",
    "field_value",
]
