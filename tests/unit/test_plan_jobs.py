"""The Kubernetes objects a run creates: every Job field the issue asks for, schema-valid."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import kubernetes_validate
import pytest
from kubetune.api.resources import Dataset, FinetuneJob
from kubetune.api.steps import DataprepStepSpec, FinetuneStepSpec, parse_step_spec
from kubetune.plan import ObservedWorld, OperatorConfig, plan

NOW = datetime(2025, 1, 1, tzinfo=UTC)
CONFIG = OperatorConfig(
    cpu_image="registry.example/kt-cpu:1",
    cuda_image="registry.example/kt-cuda:1",
    image_pull_secrets=("regcred",),
    service_account="kubetune-workload",
    ttl_seconds_after_finished=3600,
)
DATA_URI = "pvc://datasets/ml/support/g1"


def ready_dataset(name: str = "support") -> Dataset:
    return Dataset.model_validate(
        {
            "metadata": {"name": name, "namespace": "ml", "uid": "d-uid", "generation": 1},
            "spec": {"sources": [{"uri": "pvc://raw/support.jsonl"}]},
            "status": {
                "phase": "Ready",
                "observedGeneration": 1,
                "outputUri": DATA_URI,
                "artifactHash": "sha256:data",
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Completed",
                        "observedGeneration": 1,
                    }
                ],
            },
        }
    )


def finetune(name: str = "support-lora", **spec: Any) -> FinetuneJob:
    body: dict[str, Any] = {
        "model": {"base": {"uri": "hf://org/base"}},
        "dataset": {"name": "support"},
        "method": "lora",
        "lora": {"r": 8},
    }
    body.update(spec)
    return FinetuneJob.model_validate(
        {
            "metadata": {"name": name, "namespace": "ml", "uid": "f-uid", "generation": 1},
            "spec": body,
        }
    )


def children(resource: Any, config: OperatorConfig = CONFIG) -> dict[str, dict[str, Any]]:
    world = ObservedWorld(now=NOW, resources={("Dataset", "support"): ready_dataset()})
    result = plan(resource, world, config)
    for obj in result.children:
        kubernetes_validate.validate(obj, "1.32", strict=True)
    return {obj["kind"]: obj for obj in result.children}


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def env_of(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in pod_spec(job)["containers"][0]["env"]}


GPU_SPEC: dict[str, Any] = {
    "method": "qlora",
    "quantization": {"bits": 4},
    "resources": {
        "gpus": 1,
        "gpuType": "NVIDIA-A100-SXM4-80GB",
        "cpu": "8",
        "memory": "64Gi",
        "nodeSelector": {"pool": "gpu"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"}
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}
                    ]
                }
            }
        },
        "priorityClassName": "ml-high",
    },
    "retry": {"backoffLimit": 4},
    "activeDeadlineSeconds": 7200,
    "credentials": {
        "hfToken": {"secretKeyRef": {"name": "hf", "key": "token"}},
        "awsAccessKeyId": {"secretKeyRef": {"name": "s3", "key": "id"}},
        "awsSecretAccessKey": {"secretKeyRef": {"name": "s3", "key": "secret"}},
        "s3EndpointUrl": "http://minio:9000",
        "s3Region": "eu-west-1",
    },
}


def test_gpu_job_has_every_field_the_cluster_needs() -> None:
    objs = children(finetune(**GPU_SPEC))
    job = objs["Job"]
    meta = job["metadata"]
    assert meta["name"] == "support-lora-finetune-g1"
    assert meta["namespace"] == "ml"
    assert meta["labels"] == {
        "app.kubernetes.io/name": "kubetune",
        "app.kubernetes.io/component": "finetune",
        "app.kubernetes.io/managed-by": "kubetune-operator",
        "app.kubernetes.io/instance": "support-lora",
        "kubetune.dev/kind": "FinetuneJob",
        "kubetune.dev/name": "support-lora",
        "kubetune.dev/run-id": "g1",
    }
    owner = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FinetuneJob",
        "name": "support-lora",
        "uid": "f-uid",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    assert all(o["metadata"]["ownerReferences"] == [owner] for o in objs.values())

    spec = job["spec"]
    assert spec["backoffLimit"] == 4
    assert spec["activeDeadlineSeconds"] == 7200
    assert spec["ttlSecondsAfterFinished"] == 3600
    assert spec["suspend"] is False
    rules = spec["podFailurePolicy"]["rules"]
    assert {
        "action": "Ignore",
        "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}],
    } in rules

    pod = pod_spec(job)
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == "kubetune-workload"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["nodeSelector"] == {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoSchedule"} in pod[
        "tolerations"
    ]
    assert pod["affinity"] == GPU_SPEC["resources"]["affinity"]
    assert pod["priorityClassName"] == "ml-high"

    container = pod["containers"][0]
    assert container["image"] == "registry.example/kt-cuda:1"
    assert container["command"] == [
        "python", "-m", "kubetune_workloads", "finetune", "--spec", "/etc/kubetune/spec.json"
    ]  # fmt: skip
    assert container["resources"] == {
        "requests": {"cpu": "8", "memory": "64Gi"},
        "limits": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "1"},
    }
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert {"name": "progress", "containerPort": 9400, "protocol": "TCP"} in container["ports"]

    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"] == {
        "medium": "Memory",
        "sizeLimit": "32Gi",
    }
    for writable in ("/tmp", "/var/cache/kubetune"):
        assert "emptyDir" in volumes[mounts[writable]["name"]]
    assert mounts["/etc/kubetune"]["readOnly"] is True


def test_secrets_are_references_never_values() -> None:
    job = children(finetune(**GPU_SPEC))["Job"]
    env = env_of(job)
    assert env["HF_TOKEN"] == {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}},
    }
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"] == {"name": "s3", "key": "id"}
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "s3",
        "key": "secret",
    }
    for name in ("HF_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[name]
    assert env["AWS_ENDPOINT_URL"]["value"] == "http://minio:9000"
    assert env["AWS_DEFAULT_REGION"]["value"] == "eu-west-1"
    assert env["KUBETUNE_TERMINATION_LOG"]["value"] == "/dev/termination-log"
    assert env["HF_HOME"]["value"].startswith("/var/cache/kubetune")


def test_step_spec_configmap_carries_resolved_inputs_and_is_mounted() -> None:
    objs = children(finetune())
    config_map = objs["ConfigMap"]
    assert config_map["metadata"]["name"] == "support-lora-finetune-g1-spec"
    step = parse_step_spec(config_map["data"]["spec.json"])
    assert isinstance(step, FinetuneStepSpec)
    assert step.dataset.uri == DATA_URI
    assert step.dataset.content_hash == "sha256:data"
    assert step.model is not None and step.model.uri == "hf://org/base"
    assert step.output_uri == "pvc://kubetune-artifacts/ml/finetunejob/support-lora/g1"
    assert step.producer.run_id == "g1" and step.producer.uid == "f-uid"
    assert step.progress_port == 9400
    pod = pod_spec(objs["Job"])
    spec_volume = next(v for v in pod["volumes"] if v.get("configMap"))
    assert spec_volume["configMap"]["name"] == config_map["metadata"]["name"]
    assert spec_volume["configMap"]["items"] == [{"key": "spec.json", "path": "spec.json"}]


def test_pvc_uris_are_mounted_writable_only_for_the_output() -> None:
    pod = pod_spec(children(finetune())["Job"])
    claims = {
        v["persistentVolumeClaim"]["claimName"]: v
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert set(claims) == {"datasets", "kubetune-artifacts"}
    assert claims["datasets"]["persistentVolumeClaim"]["readOnly"] is True
    assert claims["kubetune-artifacts"]["persistentVolumeClaim"]["readOnly"] is False
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/mnt/pvc/datasets"]["readOnly"] is True
    assert mounts["/mnt/pvc/kubetune-artifacts"]["readOnly"] is False
    assert env_of({"spec": {"template": {"spec": pod}}})["KUBETUNE_PVC_ROOT"]["value"] == "/mnt/pvc"


def test_s3_output_needs_no_claim_and_cpu_runs_use_the_cpu_image() -> None:
    job = children(finetune(output={"uri": "s3://models/support"}))["Job"]
    pod = pod_spec(job)
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for v in pod["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {"datasets"}
    container = pod["containers"][0]
    assert container["image"] == "registry.example/kt-cpu:1"
    # No limits without a spec, but always requests (the operator's defaults for the step).
    assert container["resources"] == {"requests": {"cpu": "2", "memory": "8Gi"}}
    assert "tolerations" not in pod
    assert not any(m["mountPath"] == "/dev/shm" for m in container["volumeMounts"])


def test_dataset_job_uses_cpu_image_and_spec_image_overrides() -> None:
    dataset = Dataset.model_validate(
        {
            "metadata": {"name": "support", "namespace": "ml", "uid": "d"},
            "spec": {"sources": [{"uri": "pvc://raw/a.jsonl"}], "resources": {"gpus": 1}},
        }
    )
    job = children(dataset)["Job"]
    assert pod_spec(job)["containers"][0]["image"] == "registry.example/kt-cpu:1"
    step = parse_step_spec(children(dataset)["ConfigMap"]["data"]["spec.json"])
    assert isinstance(step, DataprepStepSpec)
    custom = finetune(image="registry.example/custom:2", resources={"gpus": 1})
    allowed = dataclasses.replace(CONFIG, allowed_images=("registry.example/custom:2",))
    assert (
        pod_spec(children(custom, allowed)["Job"])["containers"][0]["image"]
        == "registry.example/custom:2"
    )


def test_kueue_queue_label_and_job_created_suspended() -> None:
    job = children(finetune(resources={"gpus": 1, "queueName": "team-a"}))["Job"]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert job["spec"]["suspend"] is True


def test_multi_node_runs_an_indexed_job_with_a_headless_service() -> None:
    objs = children(finetune(resources={"gpus": 4, "nodes": 3, "memory": "100Gi"}))
    job, service = objs["Job"], objs["Service"]
    name = job["metadata"]["name"]
    assert service["metadata"]["name"] == name
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["selector"] == {"batch.kubernetes.io/job-name": name}
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    pod = pod_spec(job)
    assert pod["subdomain"] == name
    env = env_of(job)
    assert env["KUBETUNE_NNODES"]["value"] == "3"
    assert env["KUBETUNE_NODE_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    assert env["MASTER_ADDR"]["value"] == f"{name}-0.{name}"
    assert env["MASTER_PORT"]["value"] == "29500"
    assert env["KUBETUNE_NPROC_PER_NODE"]["value"] == "4"
    command = pod["containers"][0]["command"]
    assert command[0] == "torchrun"
    assert "--nnodes=3" in command and "--nproc-per-node=4" in command
    assert "--node-rank=$(KUBETUNE_NODE_RANK)" in command
    assert "--rdzv-backend=c10d" in command
    assert "--rdzv-endpoint=$(MASTER_ADDR):$(MASTER_PORT)" in command
    workload = ["-m", "kubetune_workloads", "finetune", "--spec", "/etc/kubetune/spec.json"]
    assert command[-len(workload) :] == workload


def test_single_node_multi_gpu_training_starts_one_process_per_gpu() -> None:
    command = pod_spec(children(finetune(resources={"gpus": 2}))["Job"])["containers"][0]["command"]
    assert command[:2] == ["torchrun", "--standalone"]
    assert "--nproc-per-node=2" in command


@pytest.mark.parametrize(
    "name",
    ["a" * 253, "support.assistant.v2", "1st-try", "x" * 40 + "." + "y" * 40],
)
def test_long_or_dotted_names_become_valid_distinct_child_names(name: str) -> None:
    objs = children(finetune(name=name, resources={"gpus": 1, "nodes": 2}))
    job_name = objs["Job"]["metadata"]["name"]
    assert len(job_name) <= 61  # room for "-<index>" pod hostnames
    assert job_name.endswith("-finetune-g1")
    assert job_name[0].isalpha()
    labels = objs["Job"]["metadata"]["labels"]
    assert all(len(v) <= 63 for v in labels.values())
    other = children(finetune(name=name[:-1] + "z", resources={"gpus": 1, "nodes": 2}))["Job"]
    assert other["metadata"]["name"] != job_name


def test_planning_twice_gives_identical_children() -> None:
    first = json.dumps(list(children(finetune(**GPU_SPEC)).values()), sort_keys=True)
    second = json.dumps(list(children(finetune(**GPU_SPEC)).values()), sort_keys=True)
    assert first == second


def test_gpu_pods_always_get_requests_and_a_bounded_shm() -> None:
    job = children(finetune(resources={"gpus": 1}))["Job"]
    pod = pod_spec(job)
    container = pod["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "4", "memory": "32Gi"},
        "limits": {"nvidia.com/gpu": "1"},
    }
    (shm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}


def test_default_requests_are_overridable_per_step() -> None:
    config = dataclasses.replace(CONFIG, default_requests=(("finetune-gpu", "16", "128Gi"),))
    job = children(finetune(resources={"gpus": 1}), config)["Job"]
    container = pod_spec(job)["containers"][0]
    assert container["resources"]["requests"] == {"cpu": "16", "memory": "128Gi"}


def test_workload_service_account_and_pull_secrets_per_namespace() -> None:
    config = dataclasses.replace(
        CONFIG,
        service_account="kubetune-workload",
        namespace_service_accounts=(("ml", "ml-team-irsa"),),
        image_pull_secrets=("global-registry",),
        namespace_image_pull_secrets=(("ml", "team-registry"), ("other", "not-ours")),
    )
    pod = pod_spec(children(finetune(), config)["Job"])
    assert pod["serviceAccountName"] == "ml-team-irsa"
    assert pod["automountServiceAccountToken"] is False
    assert pod["imagePullSecrets"] == [{"name": "global-registry"}, {"name": "team-registry"}]
    assert config.service_account_for("elsewhere") == "kubetune-workload"


def test_an_image_outside_the_allowlist_fails_the_run_and_creates_nothing() -> None:
    world = ObservedWorld(now=NOW, resources={("Dataset", "support"): ready_dataset()})
    resource = finetune(image="evil.example/miner:latest")
    result = plan(resource, world, CONFIG)
    assert result.children == []
    assert result.status["phase"] == "Failed"
    (succeeded,) = [c for c in result.status["conditions"] if c["type"] == "Succeeded"]
    assert succeeded["reason"] == "ImageNotAllowed"
    assert "evil.example/miner:latest" in succeeded["message"]
    assert any(e.reason == "ImageNotAllowed" and e.type == "Warning" for e in result.events)

    allowed = dataclasses.replace(CONFIG, allowed_images=("registry.example/kt-*",))
    ok = plan(finetune(image="registry.example/kt-cuda:2"), world, allowed)
    job = next(c for c in ok.children if c["kind"] == "Job")
    assert pod_spec(job)["containers"][0]["image"] == "registry.example/kt-cuda:2"
    assert plan(finetune(image=CONFIG.cpu_image), world, CONFIG).children
