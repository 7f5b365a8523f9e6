"""Build the batch/v1 Job, its step-spec ConfigMap and (multi-node) headless Service.

One Job per run of a step. The pod runs ``python -m kubetune_workloads <step> --spec
/etc/kubetune/spec.json`` with the step spec mounted read-only from a ConfigMap, secrets as
``secretKeyRef`` env (never values), a read-only root filesystem with writable emptyDirs, and no
service-account token. Multi-node runs are an Indexed Job plus a headless Service, started
through torchrun's c10d rendezvous on pod index 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from kubetune.api.common import Credentials, RunSettings, SecretRef
from kubetune.api.contract import (
    CACHE_ENV,
    JOB_NAME_LABEL,
    NNODES_ENV,
    NODE_RANK_ENV,
    NPROC_PER_NODE_ENV,
    PVC_ROOT_ENV,
    SPEC_DIR,
    SPEC_KEY,
    SPEC_PATH,
    TERMINATION_LOG,
    TERMINATION_LOG_ENV,
)
from kubetune.api.contract import LABEL_STAGE as LABEL_STAGE
from kubetune.api.resources import AnyResource
from kubetune.api.steps import EXIT_PERMANENT, StepName, StepSpec
from kubetune.plan import naming
from kubetune.plan.quantity import half
from kubetune.plan.world import OperatorConfig

CONTAINER = "step"
CACHE_DIR = "/var/cache/kubetune"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
COMPLETION_INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"
# Exit code a workload uses for a permanent failure reason (kubetune.api.steps.FAILURE_REASONS);
# the Job's podFailurePolicy then fails the Job at once.
EXIT_INVALID_INPUT = EXIT_PERMANENT
RUN_AS_USER = 1000
# /dev/shm of a GPU pod when neither sharedMemory nor any memory request is known.
DEFAULT_SHM = "1Gi"


@dataclass(frozen=True)
class JobRequest:
    """Everything needed to build one run's objects."""

    resource: AnyResource
    settings: RunSettings  # the resource's spec (every runnable spec is RunSettings)
    step: StepName
    run_id: str
    spec_hash: str
    step_spec: StepSpec
    extra_env: tuple[dict[str, Any], ...] = field(default=())
    # A stage of a staged run (a parallel Dataset: "map", "reduce"), and its pods: above 1 the
    # stage is an Indexed Job whose failed pods are retried per index (plan/stages.py).
    stage: str | None = None
    completions: int = 1

    @property
    def nodes(self) -> int:
        return self.settings.resources.nodes

    @property
    def job_name(self) -> str:
        if self.stage is not None:
            return stage_job_name(
                self.resource.name, self.step, self.run_id, self.stage, self.completions
            )
        return naming.job_name(self.resource.name, self.step, self.run_id, self.nodes)


def stage_job_name(resource_name: str, step: str, run_id: str, stage: str, pods: int) -> str:
    """``{name}-{step}-{stage}-{run_id}`` (e.g. ``tickets-dataprep-map-g1``), DNS-safe."""
    return naming.job_name(resource_name, f"{step}-{stage}", run_id, pods)


def build_children(req: JobRequest, config: OperatorConfig) -> list[dict[str, Any]]:
    """The objects of a run, in creation order: ConfigMap, (Service), Job."""
    children = [build_config_map(req)]
    if req.nodes > 1:
        children.append(build_service(req, config))
    children.append(build_job(req, config))
    return children


def build_config_map(req: JobRequest) -> dict[str, Any]:
    """The ConfigMap holding the step spec JSON under ``spec.json``."""
    name = naming.spec_config_map_name(req.job_name)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": naming.child_metadata(req.resource, name, req.step, req.run_id, {}),
        "data": {SPEC_KEY: req.step_spec.to_json()},
    }


def build_service(req: JobRequest, config: OperatorConfig) -> dict[str, Any]:
    """Headless Service giving multi-node pods stable DNS names (``<job>-<index>.<job>``)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": naming.child_metadata(req.resource, req.job_name, req.step, req.run_id, {}),
        "spec": {
            "clusterIP": "None",
            "selector": {JOB_NAME_LABEL: req.job_name},
            "publishNotReadyAddresses": True,
            "ports": [
                {
                    "name": "rendezvous",
                    "port": config.rendezvous_port,
                    "targetPort": config.rendezvous_port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def image_for(req: JobRequest, config: OperatorConfig) -> str:
    """spec.image, else the CPU image for dataprep and CPU-only runs, else the CUDA image."""
    if req.settings.image:
        return req.settings.image
    if req.step == "dataprep" or req.settings.resources.gpus == 0:
        return config.cpu_image
    return config.cuda_image


def _pod_failure_policy() -> dict[str, Any]:
    """A disrupted pod (preempted, evicted) is not a failure; the permanent exit code (invalid
    input) fails the Job at once; any other failure is retried."""
    return {
        "rules": [
            {
                "action": "Ignore",
                "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
            },
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": CONTAINER,
                    "operator": "In",
                    "values": [EXIT_INVALID_INPUT],
                },
            },
        ]
    }


def build_job(req: JobRequest, config: OperatorConfig) -> dict[str, Any]:
    """The batch/v1 Job of the run."""
    settings = req.settings
    res = settings.resources
    extra_labels = {naming.LABEL_QUEUE: res.queue_name} if res.queue_name else {}
    stage_labels = {LABEL_STAGE: req.stage} if req.stage is not None else {}
    extra_labels.update(stage_labels)
    meta = naming.child_metadata(req.resource, req.job_name, req.step, req.run_id, extra_labels)
    meta["annotations"].update(
        {
            naming.ANNOTATION_SPEC_HASH: req.spec_hash,
            naming.ANNOTATION_GENERATION: str(req.resource.generation),
        }
    )
    spec: dict[str, Any] = {
        "backoffLimit": settings.retry.backoff_limit,
        "podFailurePolicy": _pod_failure_policy(),
        "ttlSecondsAfterFinished": config.ttl_seconds_after_finished,
        # Kueue admits a queued Job by unsuspending it, so it must be created suspended.
        "suspend": settings.suspend or bool(res.queue_name),
        "template": {
            "metadata": {
                "labels": {**naming.labels(req.resource, req.step, req.run_id), **stage_labels}
            },
            "spec": _pod_spec(req, config),
        },
    }
    if settings.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    if req.nodes > 1:
        spec.update(
            {"completionMode": "Indexed", "completions": req.nodes, "parallelism": req.nodes}
        )
    elif req.completions > 1:
        # One pod per task index; a failed pod is retried for its own index only.
        limit = settings.retry.backoff_limit
        spec.update(
            {
                "completionMode": "Indexed",
                "completions": req.completions,
                "parallelism": req.completions,
                "backoffLimitPerIndex": limit,
                "backoffLimit": limit * req.completions,
            }
        )
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": spec}


def _pod_spec(req: JobRequest, config: OperatorConfig) -> dict[str, Any]:
    res = req.settings.resources
    claims = pvc_claims(req)
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS_USER,
            "runAsGroup": RUN_AS_USER,
            "fsGroup": RUN_AS_USER,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [_container(req, config, claims)],
        "volumes": _volumes(req, config, claims),
    }
    checkpointing = getattr(req.settings, "checkpointing", None)
    if checkpointing is not None:  # training: time to finish the step and write a checkpoint
        pod["terminationGracePeriodSeconds"] = checkpointing.grace_period_seconds
    namespace = req.resource.namespace
    service_account = config.service_account_for(namespace)
    if service_account:
        pod["serviceAccountName"] = service_account
    pull_secrets = config.image_pull_secrets_for(namespace)
    if pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in pull_secrets]
    node_selector = dict(res.node_selector or {})
    if res.gpu_type:
        node_selector[GPU_PRODUCT_LABEL] = res.gpu_type
    if node_selector:
        pod["nodeSelector"] = node_selector
    tolerations = [t.wire() for t in res.tolerations or []]
    if res.gpus > 0 and not any(t.get("key") == GPU_RESOURCE for t in tolerations):
        tolerations.append({"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    if tolerations:
        pod["tolerations"] = tolerations
    if res.affinity:
        pod["affinity"] = res.affinity.wire()
    if res.priority_class_name:
        pod["priorityClassName"] = res.priority_class_name
    if req.nodes > 1:
        pod["subdomain"] = req.job_name
    return pod


def pvc_claims(req: JobRequest) -> dict[str, bool]:
    """Claims named by pvc:// URIs anywhere in the step spec -> whether mounted writable."""
    found: set[str] = set()

    def walk(value: Any) -> None:
        if isinstance(value, str) and value.startswith("pvc://"):
            found.add(value[len("pvc://") :].split("/", 1)[0])
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(req.step_spec.model_dump(mode="json"))
    output = req.step_spec.output_uri
    out_claim = output[len("pvc://") :].split("/", 1)[0] if output.startswith("pvc://") else None
    return {claim: claim == out_claim for claim in sorted(found) if claim}


def _pvc_volume_name(claim: str) -> str:
    return naming.dns_label(f"pvc-{claim}")


def _volumes(
    req: JobRequest, config: OperatorConfig, claims: dict[str, bool]
) -> list[dict[str, Any]]:
    config_map = naming.spec_config_map_name(req.job_name)
    volumes: list[dict[str, Any]] = [
        {
            "name": "spec",
            "configMap": {"name": config_map, "items": [{"key": SPEC_KEY, "path": SPEC_KEY}]},
        },
        {"name": "tmp", "emptyDir": {}},
        {"name": "cache", "emptyDir": {}},
    ]
    res = req.settings.resources
    if res.gpus > 0:
        # Always bounded: shm counts against the pod's memory, so an unbounded tmpfs could take
        # the node's. Default: half of the memory (the spec's, else the step's default request).
        memory = res.memory or requests(req, config)[1]
        size = res.shared_memory or (half(memory) if memory else DEFAULT_SHM)
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": size}})
    for claim, writable in claims.items():
        volumes.append(
            {
                "name": _pvc_volume_name(claim),
                "persistentVolumeClaim": {"claimName": claim, "readOnly": not writable},
            }
        )
    return volumes


def _mounts(req: JobRequest, config: OperatorConfig, claims: dict[str, bool]) -> list[Any]:
    mounts: list[dict[str, Any]] = [
        {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "cache", "mountPath": CACHE_DIR},
    ]
    if req.settings.resources.gpus > 0:
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
    root = config.pvc_mount_root.rstrip("/")
    for claim, writable in claims.items():
        mounts.append(
            {
                "name": _pvc_volume_name(claim),
                "mountPath": f"{root}/{claim}",
                "readOnly": not writable,
            }
        )
    return mounts


def requests(req: JobRequest, config: OperatorConfig) -> tuple[str | None, str | None]:
    """The pod's (cpu, memory) requests: the spec's, else the operator's default for the step
    (so the scheduler never places a pod, GPU ones included, as if it needed nothing)."""
    res = req.settings.resources
    default_cpu, default_memory = config.requests_for(req.step, res.gpus)
    return res.cpu or default_cpu, res.memory or default_memory


def _resources(req: JobRequest, config: OperatorConfig) -> dict[str, Any]:
    res = req.settings.resources
    cpu, memory = requests(req, config)
    amounts = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v}
    # Limits only for what the spec sets: a default request must not OOM-kill a step that
    # needs more than the default.
    limits = {k: v for k, v in (("cpu", res.cpu), ("memory", res.memory)) if v}
    if res.gpus > 0:
        limits[GPU_RESOURCE] = str(res.gpus)
    out: dict[str, Any] = {}
    if amounts:
        out["requests"] = amounts
    if limits:
        out["limits"] = limits
    return out


def secret_env(name: str, ref: SecretRef) -> dict[str, Any]:
    selector = ref.secret_key_ref
    return {
        "name": name,
        "valueFrom": {"secretKeyRef": {"name": selector.name, "key": selector.key}},
    }


def credential_env(credentials: Credentials | None) -> list[dict[str, Any]]:
    """Env of the resource's credentials: secrets by reference, endpoint and region as values."""
    if credentials is None:
        return []
    env: list[dict[str, Any]] = []
    for var, ref in (
        ("HF_TOKEN", credentials.hf_token),
        ("AWS_ACCESS_KEY_ID", credentials.aws_access_key_id),
        ("AWS_SECRET_ACCESS_KEY", credentials.aws_secret_access_key),
    ):
        if ref is not None:
            env.append(secret_env(var, ref))
    if credentials.s3_endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": credentials.s3_endpoint_url})
    if credentials.s3_region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": credentials.s3_region})
    return env


def _env(req: JobRequest, config: OperatorConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": TERMINATION_LOG_ENV, "value": TERMINATION_LOG},
        {"name": PVC_ROOT_ENV, "value": config.pvc_mount_root},
        {"name": CACHE_ENV, "value": CACHE_DIR},
        {"name": "HF_HOME", "value": f"{CACHE_DIR}/huggingface"},
        {"name": "XDG_CACHE_HOME", "value": f"{CACHE_DIR}/xdg"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    env.extend(credential_env(req.settings.credentials))
    env.extend(req.extra_env)
    res = req.settings.resources
    if req.nodes > 1:
        env.extend(
            [
                {"name": NNODES_ENV, "value": str(req.nodes)},
                {
                    "name": NODE_RANK_ENV,
                    "valueFrom": {
                        "fieldRef": {
                            "fieldPath": f"metadata.annotations['{COMPLETION_INDEX_ANNOTATION}']"
                        }
                    },
                },
                {"name": "MASTER_ADDR", "value": f"{req.job_name}-0.{req.job_name}"},
                {"name": "MASTER_PORT", "value": str(config.rendezvous_port)},
                {"name": NPROC_PER_NODE_ENV, "value": str(max(res.gpus, 1))},
            ]
        )
    return env


def _command(req: JobRequest) -> list[str]:
    workload = ["-m", "kubetune_workloads", req.step, "--spec", SPEC_PATH]
    res = req.settings.resources
    if req.nodes > 1:
        return [
            "torchrun",
            f"--nnodes={req.nodes}",
            f"--node-rank=$({NODE_RANK_ENV})",
            f"--nproc-per-node={max(res.gpus, 1)}",
            "--rdzv-backend=c10d",
            "--rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT)",
            f"--rdzv-id={req.job_name}",
            *workload,
        ]
    if req.step == "finetune" and res.gpus > 1:
        return ["torchrun", "--standalone", "--nnodes=1", f"--nproc-per-node={res.gpus}", *workload]
    return ["python", *workload]


def _container(req: JobRequest, config: OperatorConfig, claims: dict[str, bool]) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image_for(req, config),
        "imagePullPolicy": config.image_pull_policy,
        "command": _command(req),
        "env": _env(req, config),
        "ports": [{"name": "progress", "containerPort": config.progress_port, "protocol": "TCP"}],
        "volumeMounts": _mounts(req, config, claims),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    resources = _resources(req, config)
    if resources:
        container["resources"] = resources
    if req.nodes > 1:
        container["ports"].append(
            {"name": "rendezvous", "containerPort": config.rendezvous_port, "protocol": "TCP"}
        )
    return container
