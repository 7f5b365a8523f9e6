"""spec.publish (MLflow and OCI targets) driven through the real operator and the API emulator.

The test plays the kubelet: it completes the training Job, then the publish Job, each with the
termination message the workloads write (``details.publish`` is one PublishTargetStatus per
target, as images/kubetune_workloads/publish/main.py reports it).

* success: once the run has Succeeded the operator creates ``<name>-publish-<run>`` (labels,
  ownerReference, the step spec naming the artifact, Secrets only as ``secretKeyRef`` env, run
  as non-root); its result becomes ``status.publish[]`` (Published per target) and the
  condition ``Published``;
* failure: the publish Job fails with ``RegistryUnreachable`` -> the OCI target is Failed with
  the message, the condition Published is False, and the FinetuneJob stays Succeeded.

In both, the Secret's value is nowhere in the FinetuneJob, its Events or its children.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from kubetune.api.steps import PublishStepSpec, StepResult, parse_step_spec

from tests.emulator import Emulator, Kubelet
from tests.integration.conftest import (
    CONFIG,
    FINETUNEJOBS,
    JOBS,
    NS,
    OperatorFactory,
    condition,
    events_for,
    finetune,
    jobs_of,
    ready_dataset,
    status_of,
    step_result,
    wait_event,
    wait_job,
    wait_phase,
)

NAME = "assistant"
TRAIN_JOB = f"{NAME}-finetune-g1"
PUBLISH_JOB = f"{NAME}-publish-g1"
OUTPUT_URI = "s3://kubetune-test/assistant"
CONTENT_HASH = "sha256:" + "ab" * 32
SECRET = "publish-creds"
SECRET_VALUES = {
    "mlflow-token": "mlflow-tok-9f8e7d6c5b4a",
    "oci-user": "robot$publisher",
    "oci-password": "oci-pw-1a2b3c4d5e6f",
}
MLFLOW_MODEL = "support-assistant"
OCI_REPO = "registry.example.com/team/support-assistant"
PUBLISH = {
    "mlflow": {
        "trackingUri": "https://mlflow.example.com",
        "modelName": MLFLOW_MODEL,
        "credentials": {"token": {"secretKeyRef": {"name": SECRET, "key": "mlflow-token"}}},
    },
    "oci": {
        "reference": OCI_REPO,
        "credentials": {
            "username": {"secretKeyRef": {"name": SECRET, "key": "oci-user"}},
            "password": {"secretKeyRef": {"name": SECRET, "key": "oci-password"}},
        },
    },
}
EXPECTED_SECRET_ENV = {
    "MLFLOW_TRACKING_TOKEN": {"name": SECRET, "key": "mlflow-token"},
    "KUBETUNE_OCI_USERNAME": {"name": SECRET, "key": "oci-user"},
    "KUBETUNE_OCI_PASSWORD": {"name": SECRET, "key": "oci-password"},
}
DIGEST = "sha256:" + "cd" * 32
MLFLOW_PUBLISHED = {
    "target": "mlflow",
    "phase": "Published",
    "reference": MLFLOW_MODEL,
    "version": "3",
    "url": f"https://mlflow.example.com/#/models/{MLFLOW_MODEL}/versions/3",
    "message": f"registered {MLFLOW_MODEL} version 3",
}
OCI_PUBLISHED = {
    "target": "oci",
    "phase": "Published",
    "reference": OCI_REPO,
    "version": f"{NAME}-g1",
    "digest": DIGEST,
    "url": f"{OCI_REPO}@{DIGEST}",
    "message": f"pushed 4 files as {OCI_REPO}:{NAME}-g1",
}
UNREACHABLE = "RegistryUnreachable: registry.example.com: connection refused"
OCI_FAILED = {"target": "oci", "phase": "Failed", "reference": OCI_REPO, "message": UNREACHABLE}


def create_secret(emu: Emulator) -> None:
    emu.create(
        "secrets",
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": SECRET, "namespace": NS},
            "type": "Opaque",
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in SECRET_VALUES.items()},
        },
    )


def trained(emu: Emulator, kubelet: Kubelet) -> dict[str, Any]:
    """A FinetuneJob with spec.publish whose training Job the kubelet completes."""
    create_secret(emu)
    ready_dataset(emu, kubelet)
    emu.create(FINETUNEJOBS, finetune(NAME, publish=PUBLISH), admit=True)
    wait_job(emu, TRAIN_JOB)
    pending = status_of(emu, FINETUNEJOBS, NAME)
    assert PUBLISH_JOB not in job_names(emu), "publish Job before the artifact exists"
    assert pending.get("phase") != "Succeeded"
    kubelet.succeed(
        NS,
        TRAIN_JOB,
        step_result(
            "finetune", outputUri=OUTPUT_URI, contentHash=CONTENT_HASH, metrics={"loss": 0.5}
        ),
    )
    return wait_phase(emu, FINETUNEJOBS, NAME, "Succeeded", "Completed")


def job_names(emu: Emulator) -> set[str]:
    return {j["metadata"]["name"] for j in jobs_of(emu, "FinetuneJob", NAME)}


def publish_result(ok: bool, entries: list[dict[str, Any]], reason: str) -> str:
    """The publish step's termination message (as kubetune_workloads.publish.main.run)."""
    summary = "; ".join(f"{e['target']}: {e['message']}" for e in entries)
    result = StepResult(
        step="publish",
        ok=ok,
        reason=reason,
        message=summary,
        output_uri=OUTPUT_URI if ok else None,
        content_hash=CONTENT_HASH if ok else None,
        details={"publish": entries},
    )
    return result.termination_message()


def wait_published(emu: Emulator, status: str) -> dict[str, Any]:
    """The FinetuneJob's status once its Published condition is ``status`` (True/False)."""

    def done(obj: dict[str, Any]) -> bool:
        conds = (obj.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Published" and c.get("status") == status for c in conds)

    return dict(emu.wait_for(FINETUNEJOBS, NS, NAME, done, timeout=15)["status"])


def assert_publish_job(emu: Emulator, owner_uid: str) -> None:
    """The publish Job: name, labels, owner, the step spec, Secret env by reference, non-root."""
    job = wait_job(emu, PUBLISH_JOB)
    labels = job["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "publish"
    assert labels["app.kubernetes.io/managed-by"] == "kubetune-operator"
    assert (labels["kubetune.dev/kind"], labels["kubetune.dev/name"]) == ("FinetuneJob", NAME)
    assert labels["kubetune.dev/run-id"] == "g1"
    [owner] = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "FinetuneJob",
        NAME,
        owner_uid,
        True,
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    [container] = pod["containers"]
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["image"] == CONFIG.cpu_image
    assert "nvidia.com/gpu" not in (container.get("resources") or {}).get("limits", {})
    env = {e["name"]: e for e in container["env"]}
    for var, ref in EXPECTED_SECRET_ENV.items():
        assert env[var] == {"name": var, "valueFrom": {"secretKeyRef": ref}}
    for entry in container["env"]:  # no Secret value given as a literal
        assert "value" not in entry or entry["value"] not in SECRET_VALUES.values()

    spec_map = emu.get("configmaps", NS, f"{PUBLISH_JOB}-spec")
    assert spec_map is not None
    step = parse_step_spec(spec_map["data"]["spec.json"])
    assert isinstance(step, PublishStepSpec)
    assert (step.artifact.uri, step.artifact.content_hash) == (OUTPUT_URI, CONTENT_HASH)
    assert step.version == f"{NAME}-g1"
    assert step.publish.mlflow is not None and step.publish.mlflow.model_name == MLFLOW_MODEL
    assert step.publish.oci is not None and step.publish.oci.reference == OCI_REPO
    assert step.lineage.run_id == "g1"
    assert_no_secret_value(json.dumps([job, spec_map]), "the publish Job and its ConfigMap")


def assert_no_secret_value(text: str, where: str) -> None:
    for key, value in SECRET_VALUES.items():
        encoded = base64.b64encode(value.encode()).decode()
        assert value not in text, f"Secret {SECRET}/{key}'s value in {where}"
        assert encoded not in text, f"Secret {SECRET}/{key}'s value (base64) in {where}"


def assert_nothing_leaked(emu: Emulator) -> None:
    resource = emu.get(FINETUNEJOBS, NS, NAME)
    assert_no_secret_value(json.dumps(resource), "the FinetuneJob")
    assert_no_secret_value(json.dumps(events_for(emu, NAME)), "its Events")
    children = emu.objects(JOBS, NS) + emu.objects("configmaps", NS)
    assert_no_secret_value(json.dumps(children), "Jobs and ConfigMaps")


def test_publish_job_after_training_reports_each_target_published(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        done = trained(emu, kubelet)
        assert_publish_job(emu, done["metadata"]["uid"])
        publishing = wait_published(emu, "Unknown")
        assert publishing["phase"] == "Succeeded"
        assert [(e["target"], e["phase"]) for e in publishing["publish"]] == [
            ("mlflow", "Publishing"),
            ("oci", "Publishing"),
        ]
        assert condition(publishing, "Published")["reason"] == "Publishing"

        kubelet.succeed(
            NS,
            PUBLISH_JOB,
            publish_result(True, [MLFLOW_PUBLISHED, OCI_PUBLISHED], "Completed"),
        )
        status = wait_published(emu, "True")
        assert status["phase"] == "Succeeded"
        assert status["publish"] == [MLFLOW_PUBLISHED, OCI_PUBLISHED]
        published = condition(status, "Published")
        assert published["reason"] == "Published"
        assert (status["outputUri"], status["results"]) == (OUTPUT_URI, {"loss": 0.5})
        wait_event(emu, NAME, "Published")
        assert_nothing_leaked(emu)
    assert job_names(emu) == {TRAIN_JOB, PUBLISH_JOB}


def test_publish_job_failure_marks_the_target_failed_and_the_run_stays_succeeded(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        done = trained(emu, kubelet)
        assert_publish_job(emu, done["metadata"]["uid"])
        message = publish_result(False, [MLFLOW_PUBLISHED, OCI_FAILED], "RegistryUnreachable")
        kubelet.fail(NS, PUBLISH_JOB, "Error", message=message)

        status = wait_published(emu, "False")
        assert status["phase"] == "Succeeded"
        assert condition(status, "Ready")["status"] == "True"
        assert status["publish"] == [MLFLOW_PUBLISHED, OCI_FAILED]
        failed = condition(status, "Published")
        assert failed["reason"] == "RegistryUnreachable"
        assert UNREACHABLE in failed["message"]
        kind, _, text = wait_event(emu, NAME, "PublishFailed")
        assert kind == "Warning" and text.startswith("RegistryUnreachable: ")
        assert_nothing_leaked(emu)
    assert job_names(emu) == {TRAIN_JOB, PUBLISH_JOB}
