"""
A test "kubelet" + "job controller": drive batch/v1 Jobs and their Pods by hand.

There are no controllers in the emulator (as in envtest), so nothing happens
to a Job on its own. :class:`Kubelet` moves a Job and its Pod through the
lifecycle the way the real job controller, scheduler and kubelet would,
writing through the emulator's store (resourceVersions bump, watch events
are emitted, so a watching operator sees every step)::

    kubelet = Kubelet(emu)
    kubelet.start('default', 'train-1')                     # Pod Running, Job active=1
    kubelet.succeed('default', 'train-1', {'loss': 0.1})    # termination message (JSON)
    kubelet.fail('default', 'train-2', 'OOMKilled')         # exit 137, Job Failed
    kubelet.fail('default', 'train-3', 'Unschedulable')     # PodScheduled=False
    kubelet.fail('default', 'train-4', 'DeadlineExceeded')  # Job Failed (DeadlineExceeded)

Pod-level reasons (``OOMKilled``, ``Error``) also fail the Job with
``BackoffLimitExceeded`` (as if no retries were left) unless ``job_reason=None``;
pending reasons (``ImagePullBackOff``, ``Unschedulable``) leave the Job active
unless a ``job_reason`` is given (e.g. ``DeadlineExceeded``).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from tests.emulator.harness import Emulator
from tests.emulator.k8sutils import JsonDict, now_rfc3339

POD_REASONS = ("OOMKilled", "Error", "ImagePullBackOff", "ErrImagePull", "Unschedulable")
JOB_REASONS = ("BackoffLimitExceeded", "DeadlineExceeded", "PodFailurePolicy")
_JOB_MESSAGES = {
    "BackoffLimitExceeded": "Job has reached the specified backoff limit",
    "DeadlineExceeded": "Job was active longer than specified deadline",
    "PodFailurePolicy": "Container main for pod failed with exit code 137 matching FailJob rule",
}


def condition(type_: str, reason: str, message: str = "", status: str = "True") -> JsonDict:
    """A Job/Pod condition as the controllers write it."""
    now = now_rfc3339()
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


class Kubelet:
    """Drives Jobs & Pods stored in an :class:`Emulator` through their lifecycle."""

    def __init__(self, emulator: Emulator, *, node_name: str = "emulated-node") -> None:
        self.emulator = emulator
        self.node_name = node_name

    # ---------------------------------------------------------------------------------------------
    # Lookups

    def job(self, namespace: str, name: str) -> JsonDict:
        """The Job (raises ``LookupError`` if absent)."""
        job = self.emulator.get("jobs.batch", namespace, name)
        if job is None:
            raise LookupError(f"Job {namespace}/{name} does not exist")
        return job

    def pods(self, namespace: str, job_name: str) -> list[JsonDict]:
        """The Pods of a Job (by the ``batch.kubernetes.io/job-name`` label)."""
        selector = f"batch.kubernetes.io/job-name={job_name}"
        return self.emulator.objects("pods", namespace, labels=selector)

    def pod(self, namespace: str, job_name: str) -> JsonDict:
        """The latest Pod of a Job, created if there is none yet."""
        pods = self.pods(namespace, job_name)
        return pods[-1] if pods else self.create_pod(namespace, job_name)

    # ---------------------------------------------------------------------------------------------
    # Lifecycle steps

    def create_pod(self, namespace: str, job_name: str) -> JsonDict:
        """Create a Pending Pod for the Job (as the job controller does); Job ``active=1``."""
        job = self.job(namespace, job_name)
        template = copy.deepcopy(job["spec"].get("template") or {})
        meta = template.get("metadata") or {}
        uid = job["metadata"]["uid"]
        labels = {
            **(meta.get("labels") or {}),
            "batch.kubernetes.io/controller-uid": uid,
            "batch.kubernetes.io/job-name": job_name,
            "controller-uid": uid,
            "job-name": job_name,
        }
        pod_spec = template.get("spec") or {}
        pod_spec.setdefault("containers", [{"name": "main", "image": "busybox"}])
        pod_spec.setdefault("restartPolicy", "Never")
        pod = self.emulator.create(
            "pods",
            {
                "metadata": {
                    "generateName": f"{job_name}-",
                    "namespace": namespace,
                    "labels": labels,
                    "annotations": dict(meta.get("annotations") or {}),
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
            },
        )
        status: JsonDict = {"active": 1, "ready": 0, "uncountedTerminatedPods": {}}
        if not job.get("status", {}).get("startTime"):
            status["startTime"] = now_rfc3339()
        self.emulator.patch_status("jobs.batch", namespace, job_name, status)
        return pod

    def start(self, namespace: str, job_name: str) -> JsonDict:
        """Schedule & run the Job's Pod (phase Running, Ready); Job ``active=1, ready=1``."""
        pod = self.pod(namespace, job_name)
        name = pod["metadata"]["name"]
        now = now_rfc3339()
        self.emulator.patch("pods", namespace, name, {"spec": {"nodeName": self.node_name}})
        container = pod["spec"]["containers"][0]
        pod = self.emulator.patch_status(
            "pods",
            namespace,
            name,
            {
                "phase": "Running",
                "hostIP": "10.0.0.1",
                "podIP": "10.244.0.10",
                "startTime": now,
                "conditions": [
                    condition("PodScheduled", ""),
                    condition("Initialized", ""),
                    condition("ContainersReady", ""),
                    condition("Ready", ""),
                ],
                "containerStatuses": [
                    {
                        "name": container.get("name", "main"),
                        "image": container.get("image", ""),
                        "imageID": "",
                        "ready": True,
                        "started": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": now}},
                    }
                ],
            },
        )
        status = {"active": 1, "ready": 1}
        self.emulator.patch_status("jobs.batch", namespace, job_name, status)
        return pod

    def succeed(
        self, namespace: str, job_name: str, message: str | Mapping[str, Any] | None = None
    ) -> JsonDict:
        """
        Complete the Job: the container exits 0 with the termination ``message``
        (a dict is JSON-encoded); the Job gets ``succeeded=1``, ``completionTime``
        and the conditions ``SuccessCriteriaMet`` & ``Complete``. Returns the Job.
        """
        pod = self._running_pod(namespace, job_name)
        text = json.dumps(message) if isinstance(message, Mapping) else message
        terminated: JsonDict = {"exitCode": 0, "reason": "Completed"}
        if text is not None:
            terminated["message"] = text
        self._terminate(pod, "Succeeded", terminated, ready_reason="PodCompleted")
        now = now_rfc3339()
        return self.emulator.patch_status(
            "jobs.batch",
            namespace,
            job_name,
            {
                "active": None,
                "ready": 0,
                "succeeded": 1,
                "completionTime": now,
                "conditions": [
                    condition(
                        "SuccessCriteriaMet",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                    ),
                    condition(
                        "Complete",
                        "CompletionsReached",
                        "Reached expected number of succeeded pods",
                    ),
                ],
            },
        )

    def fail(
        self,
        namespace: str,
        job_name: str,
        reason: str = "Error",
        *,
        message: str | None = None,
        job_reason: str | None = "auto",
    ) -> JsonDict:
        """
        Fail the Job or its Pod with a ``reason``; returns the Job.

        * ``OOMKilled``: the container is terminated with exit code 137;
        * ``Error``: the container is terminated with exit code 1 (and ``message``);
        * ``ImagePullBackOff``/``ErrImagePull``: the container is waiting (Pod Pending);
        * ``Unschedulable``: the Pod has ``PodScheduled=False`` (reason Unschedulable);
        * ``BackoffLimitExceeded``/``DeadlineExceeded``/``PodFailurePolicy``: the Job fails.

        ``job_reason`` is the Job-level failure reason: by default ``BackoffLimitExceeded``
        for terminated containers, none (the Job stays active) for pending Pods.
        """
        if reason in JOB_REASONS:
            return self.fail_job(namespace, job_name, reason, message=message)
        if reason == "OOMKilled":
            pod = self._running_pod(namespace, job_name)
            terminated = {"exitCode": 137, "reason": "OOMKilled"}
            self._terminate(pod, "Failed", terminated, ready_reason="PodFailed")
            default_job_reason: str | None = "BackoffLimitExceeded"
        elif reason == "Error":
            pod = self._running_pod(namespace, job_name)
            terminated = {"exitCode": 1, "reason": "Error"}
            if message is not None:
                terminated["message"] = message
            self._terminate(pod, "Failed", terminated, ready_reason="PodFailed")
            default_job_reason = "BackoffLimitExceeded"
        elif reason in ("ImagePullBackOff", "ErrImagePull"):
            self.image_pull_backoff(namespace, job_name, reason=reason, message=message)
            default_job_reason = None
        elif reason == "Unschedulable":
            self.unschedulable(namespace, job_name, message=message)
            default_job_reason = None
        else:
            raise ValueError(f"unsupported failure reason: {reason!r}")
        final_reason = default_job_reason if job_reason == "auto" else job_reason
        if final_reason is None:
            return self.job(namespace, job_name)
        return self.fail_job(namespace, job_name, final_reason)

    def image_pull_backoff(
        self,
        namespace: str,
        job_name: str,
        *,
        reason: str = "ImagePullBackOff",
        message: str | None = None,
    ) -> JsonDict:
        """The Pod is scheduled but its container waits on the image pull. Returns the Pod."""
        pod = self.pod(namespace, job_name)
        name = pod["metadata"]["name"]
        container = pod["spec"]["containers"][0]
        image = container.get("image", "")
        self.emulator.patch("pods", namespace, name, {"spec": {"nodeName": self.node_name}})
        return self.emulator.patch_status(
            "pods",
            namespace,
            name,
            {
                "phase": "Pending",
                "conditions": [
                    condition("PodScheduled", ""),
                    condition("Initialized", ""),
                    condition("ContainersReady", "ContainersNotReady", status="False"),
                    condition("Ready", "ContainersNotReady", status="False"),
                ],
                "containerStatuses": [
                    {
                        "name": container.get("name", "main"),
                        "image": image,
                        "imageID": "",
                        "ready": False,
                        "started": False,
                        "restartCount": 0,
                        "state": {
                            "waiting": {
                                "reason": reason,
                                "message": message or f'Back-off pulling image "{image}"',
                            }
                        },
                    }
                ],
            },
        )

    def unschedulable(
        self, namespace: str, job_name: str, *, message: str | None = None
    ) -> JsonDict:
        """The scheduler cannot place the Pod: ``PodScheduled=False``. Returns the Pod."""
        pod = self.pod(namespace, job_name)
        text = message or "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
        return self.emulator.patch_status(
            "pods",
            namespace,
            pod["metadata"]["name"],
            {
                "phase": "Pending",
                "conditions": [condition("PodScheduled", "Unschedulable", text, status="False")],
            },
        )

    def fail_job(
        self,
        namespace: str,
        job_name: str,
        reason: str = "BackoffLimitExceeded",
        *,
        message: str | None = None,
    ) -> JsonDict:
        """Fail the Job as its controller does (``FailureTarget`` & ``Failed``); return the Job."""
        text = message or _JOB_MESSAGES.get(reason, reason)
        for pod in self.pods(namespace, job_name):
            if pod.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                # Active pods are killed (e.g. on the deadline), and are failed with this reason.
                self.emulator.patch_status(
                    "pods",
                    namespace,
                    pod["metadata"]["name"],
                    {"phase": "Failed", "reason": reason, "message": text},
                )
        failed = sum(1 for p in self.pods(namespace, job_name) if p["status"]["phase"] == "Failed")
        return self.emulator.patch_status(
            "jobs.batch",
            namespace,
            job_name,
            {
                "active": None,
                "ready": 0,
                "failed": max(failed, 1),
                "conditions": [
                    condition("FailureTarget", reason, text),
                    condition("Failed", reason, text),
                ],
            },
        )

    # ---------------------------------------------------------------------------------------------
    # Internals

    def _running_pod(self, namespace: str, job_name: str) -> JsonDict:
        pod = self.pod(namespace, job_name)
        if pod.get("status", {}).get("phase") != "Running":
            pod = self.start(namespace, job_name)
        return pod

    def _terminate(
        self, pod: JsonDict, phase: str, terminated: JsonDict, *, ready_reason: str
    ) -> JsonDict:
        meta = pod["metadata"]
        now = now_rfc3339()
        statuses = copy.deepcopy(pod.get("status", {}).get("containerStatuses") or [{}])
        started = statuses[0].get("state", {}).get("running", {}).get("startedAt", now)
        statuses[0].update(
            {
                "ready": False,
                "started": False,
                "state": {
                    "terminated": {
                        **terminated,
                        "startedAt": started,
                        "finishedAt": now,
                        "containerID": f"containerd://{meta['uid']}",
                    }
                },
            }
        )
        return self.emulator.patch_status(
            "pods",
            meta["namespace"],
            meta["name"],
            {
                "phase": phase,
                "conditions": [
                    condition("PodScheduled", ""),
                    condition("Initialized", ""),
                    condition("ContainersReady", ready_reason, status="False"),
                    condition("Ready", ready_reason, status="False"),
                ],
                "containerStatuses": statuses,
            },
        )
