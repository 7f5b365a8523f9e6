"""Planning spec.publish (MLflow, OCI, Hub): the publish Job after the artifact, its step spec
and Secret env, status.publish[] and the Published condition from its result; a FeedbackLoop's
challenger publish and the promote Job that moves champion."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubetune.api.publish import PublishTargetStatus
from kubetune.api.resources import FeedbackLoop, FinetuneJob
from kubetune.api.steps import PublishStepSpec, StepResult, parse_step_spec
from kubetune.plan import ObservedJob, ObservedPod, ObservedWorld, OperatorConfig, Plan, plan
from kubetune.plan.feedback.children import cycle_compression, cycle_finetune

from tests.helpers.cel_cases import LOOP

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = OperatorConfig()
OUT = "s3://models/ml/assistant/g1"
SECRET = {"secretKeyRef": {"name": "registry", "key": "password"}}
PUBLISH = {
    "mlflow": {
        "trackingUri": "https://mlflow.example.com",
        "modelName": "assistant",
        "credentials": {"token": {"secretKeyRef": {"name": "mlflow", "key": "token"}}},
    },
    "oci": {
        "reference": "registry.example.com/team/assistant",
        "credentials": {
            "username": {"secretKeyRef": {"name": "registry", "key": "user"}},
            "password": SECRET,
        },
    },
    "huggingface": {
        "repo": "hf://acme/assistant",
        "token": {"secretKeyRef": {"name": "hf", "key": "t"}},
    },
}


def finetune(
    publish: dict[str, Any] | None = PUBLISH, status: dict[str, Any] | None = None
) -> FinetuneJob:
    return FinetuneJob.model_validate(
        {
            "metadata": {"name": "assistant", "namespace": "ml", "uid": "uid-1", "generation": 1},
            "spec": {
                "model": {"base": {"uri": "hf://org/base"}},
                "dataset": {"uri": "s3://data/train"},
                "lora": {"r": 4},
                **({"publish": publish} if publish is not None else {}),
            },
            **({"status": status} if status else {}),
        }
    )


def job(
    step: str, result: StepResult | None, run_id: str = "g1", failed: bool = False
) -> ObservedJob:
    message = result.termination_message() if result is not None else None
    phase = "Failed" if failed else ("Succeeded" if result is not None else "Running")
    pod = ObservedPod("p", phase, termination_message=message, start_time=NOW)
    done = {
        "type": "Failed" if failed else "Complete",
        "status": "True",
        "reason": "BackoffLimitExceeded",
    }
    return ObservedJob(
        name=f"assistant-{step}-{run_id}",
        run_id=run_id,
        active=0 if result is not None else 1,
        succeeded=1 if result is not None and not failed else 0,
        failed=1 if failed else 0,
        conditions=(done,) if result is not None else (),
        start_time=NOW - timedelta(minutes=1),
        completion_time=NOW if result is not None and not failed else None,
        pods=(pod,),
    )


TRAINED = StepResult(
    step="finetune",
    ok=True,
    reason="Completed",
    output_uri=OUT,
    content_hash="sha256:abc",
    metrics={"eval_loss": 1.5},
)


def planned(resource: Any, *jobs: ObservedJob, **world: Any) -> Plan:
    return plan(resource, ObservedWorld(now=NOW, jobs=jobs, **world), CONFIG)


def the_job(result: Plan, step: str = "publish") -> dict[str, Any]:
    [found] = [
        c
        for c in result.children
        if c["kind"] == "Job" and c["metadata"]["labels"]["app.kubernetes.io/component"] == step
    ]
    return dict(found)


def step_spec(result: Plan) -> PublishStepSpec:
    [cm] = [
        c
        for c in result.children
        if c["kind"] == "ConfigMap" and "-publish-" in c["metadata"]["name"]
    ]
    spec = parse_step_spec(cm["data"]["spec.json"])
    assert isinstance(spec, PublishStepSpec)
    return spec


def condition(result: Plan, kind: str = "Published") -> dict[str, Any]:
    return next(c for c in result.status["conditions"] if c["type"] == kind)


def test_nothing_is_published_before_the_artifact_is_complete() -> None:
    result = planned(finetune(), job("finetune", None))
    assert not [c for c in result.children if "-publish-" in c["metadata"]["name"]]
    assert {e["phase"] for e in result.status["publish"]} == {"Pending"}
    assert condition(result)["reason"] == "WaitingForArtifact"


def test_the_publish_job_follows_the_finished_artifact_with_secret_refs_only() -> None:
    result = planned(finetune(), job("finetune", TRAINED))
    assert result.status["phase"] == "Succeeded"  # dependents need not wait for publishing
    body = the_job(result)
    assert body["metadata"]["name"] == "assistant-publish-g1"
    container = body["spec"]["template"]["spec"]["containers"][0]
    assert container["command"][-3:] == ["publish", "--spec", "/etc/kubetune/spec.json"]
    env = {e["name"]: e for e in container["env"]}
    assert env["KUBETUNE_OCI_PASSWORD"]["valueFrom"]["secretKeyRef"] == SECRET["secretKeyRef"]
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "mlflow"
    assert env["KUBETUNE_HF_PUBLISH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "hf"
    assert all("value" not in e for n, e in env.items() if "TOKEN" in n or "PASSWORD" in n)
    assert "nvidia.com/gpu" not in json.dumps(body)
    spec = step_spec(result)
    assert spec.artifact.uri == OUT and spec.artifact.content_hash == "sha256:abc"
    assert spec.version == "assistant-g1"
    assert spec.lineage.base_model == "hf://org/base" and spec.lineage.dataset == "s3://data/train"
    assert spec.lineage.metrics == {"eval_loss": 1.5}
    assert {e["phase"] for e in result.status["publish"]} == {"Publishing"}
    assert condition(result)["status"] == "Unknown"


def test_the_main_run_is_not_confused_by_its_publish_job() -> None:
    running = planned(finetune(), job("finetune", TRAINED), job("publish", None))
    assert running.status["phase"] == "Succeeded" and running.children == []
    assert {e["phase"] for e in running.status["publish"]} == {"Publishing"}
    assert running.requeue_after is not None


def published_result() -> StepResult:
    entries = [
        PublishTargetStatus(target="mlflow", phase="Published", reference="assistant", version="7"),
        PublishTargetStatus(
            target="oci",
            phase="Published",
            reference="r/t/a",
            version="assistant-g1",
            digest="sha256:" + "d" * 64,
        ),
        PublishTargetStatus(
            target="huggingface", phase="Published", reference="hf://acme/assistant"
        ),
    ]
    details = {
        "publish": [e.model_dump(mode="json", by_alias=True, exclude_none=True) for e in entries]
    }
    return StepResult(step="publish", ok=True, reason="Completed", message="ok", details=details)


def test_status_per_target_comes_from_the_publish_result() -> None:
    result = planned(finetune(), job("finetune", TRAINED), job("publish", published_result()))
    by_target = {e["target"]: e for e in result.status["publish"]}
    assert by_target["mlflow"]["version"] == "7"
    assert by_target["oci"]["digest"] == "sha256:" + "d" * 64
    assert condition(result)["status"] == "True"
    assert [e.reason for e in result.events if e.reason == "Published"] == ["Published"]


def test_a_failed_publish_shows_per_target_and_warns_once() -> None:
    entries = [
        {"target": "mlflow", "phase": "Published", "reference": "assistant", "version": "3"},
        {
            "target": "oci",
            "phase": "Failed",
            "reference": "r/t/a",
            "message": "PublishUnauthorized: OCI registry refused GET /v2/ (401)",
        },
    ]
    failed = StepResult(
        step="publish",
        ok=False,
        reason="PublishUnauthorized",
        message="oci refused",
        details={"publish": entries},
    )
    resource = finetune()
    result = planned(resource, job("finetune", TRAINED), job("publish", failed, failed=True))
    assert condition(result)["status"] == "False"
    assert condition(result)["reason"] == "PublishUnauthorized"
    phases = {e["target"]: e["phase"] for e in result.status["publish"]}
    assert phases == {"mlflow": "Published", "oci": "Failed"}
    assert [e.type for e in result.events if e.reason == "PublishFailed"] == ["Warning"]
    again = planned(
        finetune(status=result.status),
        job("finetune", TRAINED),
        job("publish", failed, failed=True),
    )
    assert not [e for e in again.events if e.reason == "PublishFailed"]


def test_a_finished_publish_is_remembered_once_its_jobs_are_gone() -> None:
    done = planned(finetune(), job("finetune", TRAINED), job("publish", published_result()))
    later = planned(finetune(status=done.status))
    assert later.children == []
    assert later.status["publish"] == done.status["publish"]


def test_no_targets_no_publish_job() -> None:
    result = planned(finetune(publish=None), job("finetune", TRAINED))
    assert result.children == [] and result.status.get("publish") is None


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"oci": {"reference": "https://registry.example.com/x"}}, "reference"),
        ({"oci": {"reference": "r.example.com/x", "tag": "bad tag"}}, "tag"),
        ({"mlflow": {"trackingUri": "ftp://x", "modelName": "m"}}, "tracking"),
        (
            {"mlflow": {"trackingUri": "https://u:secret@m.example.com", "modelName": "m"}},
            "tracking",
        ),
        ({"huggingface": {"repo": "acme/x", "token": SECRET}}, "repo"),
        (
            {
                "mlflow": {
                    "trackingUri": "http://m",
                    "modelName": "m",
                    "credentials": {"username": SECRET},
                }
            },
            "username and password",
        ),
        ({"aliases": ["has space"]}, "aliases"),
    ],
)
def test_bad_publish_specs_are_refused(bad: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        finetune(publish=bad)


# --- FeedbackLoop ---------------------------------------------------------------------------


def loop(publish: dict[str, Any] | None, status: dict[str, Any] | None = None) -> FeedbackLoop:
    body: dict[str, Any] = {
        "metadata": {"name": "loop", "namespace": "ml", "uid": "loop-uid", "generation": 1},
        "spec": {
            **LOOP,
            "baseDataset": {"name": "base"},
            "promotion": {"publish": publish} if publish else {},
        },
    }
    if status:
        body["status"] = status
    return FeedbackLoop.model_validate(body)


def test_a_cycle_challenger_publishes_with_the_challenger_alias() -> None:
    with_publish = loop(PUBLISH)
    kind_body = cycle_compression(with_publish, 1) or cycle_finetune(
        with_publish, 1, "s3://m/champion"
    )
    publish = kind_body["spec"]["publish"]
    assert publish["aliases"] == ["challenger"]
    assert set(publish) == {"mlflow", "oci", "huggingface", "aliases"}
    assert "publish" not in cycle_finetune(loop(None), 1, "s3://m/champion")["spec"]


def challenger(entries: list[dict[str, Any]]) -> FinetuneJob:
    body = cycle_finetune(loop(PUBLISH), 1, "s3://m/champion")
    body["metadata"]["uid"] = "c1-uid"
    body["status"] = {"phase": "Succeeded", "outputUri": "s3://m/c1", "publish": entries}
    return FinetuneJob.model_validate(body)


PROMOTED = {
    "championCycle": 1,
    "champion": "s3://m/c1",
    "cycles": 1,
    "generation": 1,
    "history": [
        {"runId": "c1", "phase": "Succeeded", "reason": "Promoted", "results": {"exactMatch": 0.75}}
    ],
}
DIGEST = "sha256:" + "e" * 64
CHALLENGER_ENTRIES = [
    {"target": "mlflow", "phase": "Published", "version": "4", "aliases": ["challenger"]},
    {"target": "oci", "phase": "Published", "version": "loop-c1-g1", "digest": DIGEST},
    {"target": "huggingface", "phase": "Published", "version": "abc"},
]


def loop_world(
    *jobs: ObservedJob, entries: list[dict[str, Any]] = CHALLENGER_ENTRIES
) -> ObservedWorld:
    owned = {("FinetuneJob", "loop-c1"): challenger(entries)}
    return ObservedWorld(now=NOW, jobs=jobs, owned=owned)  # type: ignore[arg-type]


def test_promotion_creates_a_promote_job_moving_champion_to_the_challenger_versions() -> None:
    resource = loop(PUBLISH, PROMOTED)
    result = plan(resource, loop_world(), CONFIG)
    body = the_job(result)
    assert body["metadata"]["name"] == "loop-publish-p1"
    spec = step_spec(result)
    assert spec.mode == "promote" and spec.promote is not None
    assert spec.promote.alias == "champion"
    assert spec.promote.mlflow_version == "4" and spec.promote.oci_digest == DIGEST
    assert spec.promote.tags == {"kubetune.evaluation.exactMatch": "0.75"}
    assert spec.publish.huggingface is None  # the Hub has no alias to move
    env = {e["name"] for e in body["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"MLFLOW_TRACKING_TOKEN", "KUBETUNE_OCI_PASSWORD"} <= env
    assert condition(result, "ChampionPublished")["reason"] == "Publishing"

    moved = [
        {"target": "mlflow", "phase": "Published", "version": "4", "aliases": ["champion"]},
        {"target": "oci", "phase": "Published", "version": "champion", "digest": DIGEST},
    ]
    done = StepResult(step="publish", ok=True, reason="Completed", details={"publish": moved})
    promote = ObservedJob(
        name="loop-publish-p1",
        run_id="p1",
        succeeded=1,
        conditions=({"type": "Complete", "status": "True"},),
        completion_time=NOW,
        pods=(ObservedPod("p", "Succeeded", termination_message=done.termination_message()),),
    )
    finished = plan(resource, loop_world(promote), CONFIG)
    assert not [c for c in finished.children if c["kind"] == "Job"]
    assert condition(finished, "ChampionPublished")["status"] == "True"
    assert {e["target"]: e.get("digest") for e in finished.status["publish"]}["oci"] == DIGEST
    assert [e.reason for e in finished.events if e.reason == "ChampionPublished"]


def test_promotion_waits_for_the_challenger_publish_and_reports_its_failure() -> None:
    resource = loop(PUBLISH, PROMOTED)
    pending = [{**e, "phase": "Publishing"} for e in CHALLENGER_ENTRIES]
    waiting = plan(resource, loop_world(entries=pending), CONFIG)
    assert not [c for c in waiting.children if c["kind"] == "Job"]
    assert condition(waiting, "ChampionPublished")["reason"] == "WaitingForChallenger"
    assert waiting.requeue_after is not None
    failed = [{**CHALLENGER_ENTRIES[0], "phase": "Failed", "message": "RegistryUnreachable: ..."}]
    refused = plan(resource, loop_world(entries=failed + CHALLENGER_ENTRIES[1:]), CONFIG)
    assert condition(refused, "ChampionPublished")["status"] == "False"
    assert condition(refused, "ChampionPublished")["reason"] == "ChallengerNotPublished"


def test_a_compression_publishes_with_its_source_model_as_lineage() -> None:
    from kubetune.api.resources import Compression

    compression = Compression.model_validate(
        {
            "metadata": {"name": "small", "namespace": "ml", "uid": "uid-2", "generation": 1},
            "spec": {
                "model": {"uri": "s3://models/ml/assistant/g1"},
                "steps": [{"quantize": {"bits": 8}}],
                "publish": {"oci": PUBLISH["oci"]},
            },
        }
    )
    compressed = StepResult(
        step="compress",
        ok=True,
        reason="Completed",
        output_uri="s3://models/ml/small/g1",
        content_hash="sha256:c0",
    )
    pod = ObservedPod("p", "Succeeded", termination_message=compressed.termination_message())
    done = ObservedJob(
        name="small-compress-g1",
        run_id="g1",
        succeeded=1,
        pods=(pod,),
        conditions=({"type": "Complete", "status": "True"},),
        completion_time=NOW,
    )
    result = planned(compression, done)
    spec = step_spec(result)
    assert spec.lineage.source_model == "s3://models/ml/assistant/g1"
    assert spec.artifact.uri == "s3://models/ml/small/g1" and spec.version == "small-g1"
    assert [e["target"] for e in result.status["publish"]] == ["oci"]


def test_kubetune_run_is_not_done_when_a_publish_failed() -> None:
    from kubetune.local.runner import is_done

    body: dict[str, Any] = {
        "kind": "FinetuneJob",
        "status": {"phase": "Succeeded", "conditions": []},
    }
    assert is_done(body)
    body["status"]["conditions"] = [{"type": "Published", "status": "False", "reason": "X"}]
    assert not is_done(body)
