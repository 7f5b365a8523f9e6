"""spec.publish.kserve planned: the InferenceService of a finished model (full, merged, LoRA on
vLLM), checked against KServe's schema (built from its published SDK) and webhook storage rules,
its status recomputed from what KServe reports, and the refusals (no KServe, a foreign object, a
model KServe cannot read)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from kubetune.api.resources import Compression, FeedbackLoop, FinetuneJob
from kubetune.api.serving import ABORT_ROLLOUT_ANNOTATION
from kubetune.api.steps import StepResult
from kubetune.plan import ObservedJob, ObservedPod, ObservedWorld, OperatorConfig, Plan, plan
from kubetune.plan.serving import (
    ANNOTATION_SERVING_HASH,
    Served,
    plan_loop_serving,
    render_service,
    served_model,
)
from kubetune.plan.world import ObservedServing
from kubetune.schema.validation import load_manifests
from pydantic import ValidationError

from tests.helpers import kserve
from tests.helpers.cel_cases import LOOP

NOW = datetime(2026, 1, 1, tzinfo=UTC)
CONFIG = OperatorConfig()
NS = "ml"
OUT = "s3://models/ml/assistant/g1"
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "serving-kserve.yaml"


def finetune(publish: dict[str, Any] | None = None, **spec: Any) -> FinetuneJob:
    body: dict[str, Any] = {
        "metadata": {"name": "assistant", "namespace": NS, "uid": "uid-1", "generation": 1},
        "spec": {
            "model": {"base": {"uri": "hf://org/base"}},
            "dataset": {"uri": "s3://data/train"},
            "lora": {"r": 4},
            "publish": {"kserve": publish if publish is not None else {}},
            **spec,
        },
    }
    return FinetuneJob.model_validate(body)


def succeeded(uri: str = OUT, step: str = "finetune") -> ObservedJob:
    result = StepResult(step=step, ok=True, reason="Completed", output_uri=uri)
    pod = ObservedPod("p", "Succeeded", termination_message=result.termination_message())
    return ObservedJob(
        name=f"assistant-{step}-g1",
        run_id="g1",
        succeeded=1,
        conditions=({"type": "Complete", "status": "True"},),
        start_time=NOW - timedelta(minutes=5),
        completion_time=NOW,
        pods=(pod,),
    )


def world(*services: dict[str, Any], installed: bool = True, done: bool = True) -> ObservedWorld:
    serving = ObservedServing(
        installed=installed,
        inference_services={s["metadata"]["name"]: s for s in services},
    )
    return ObservedWorld(now=NOW, jobs=(succeeded(),) if done else (), serving=serving)


def the_service(result: Plan) -> dict[str, Any]:
    [isvc] = [c for c in result.children if c["kind"] == "InferenceService"]
    assert kserve.errors(isvc) == []
    return isvc


def kserve_status(result: Plan) -> dict[str, Any]:
    [entry] = [e for e in result.status["publish"] if e["target"] == "kserve"]
    return dict(entry)


def serving_condition(result: Plan) -> dict[str, Any]:
    return next(c for c in result.status["conditions"] if c["type"] == "Serving")


def reported(isvc: dict[str, Any], ready: bool = True, **status: Any) -> dict[str, Any]:
    """The InferenceService as KServe reports it back."""
    observed = json.loads(json.dumps(isvc))
    observed["status"] = {
        "url": "http://assistant.ml.example.com",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "components": {
            "predictor": {
                "traffic": [{"revisionName": "assistant-predictor-00001", "percent": 100}]
            }
        },
        **status,
    }
    return observed


# --- rendering ----------------------------------------------------------------------------------


def test_a_full_model_is_served_by_storage_uri_with_labels_owner_and_no_secrets() -> None:
    job = finetune(
        {
            "runtime": "kserve-huggingfaceserver",
            "resources": {"cpu": "4", "memory": "16Gi", "gpus": 1},
            "serviceAccountName": "models-reader",
            "minReplicas": 1,
            "args": ["--max-model-len=4096"],
        },
        method="full",
        lora=None,
    )
    result = plan(job, world(), CONFIG)
    isvc = the_service(result)
    meta, predictor = isvc["metadata"], isvc["spec"]["predictor"]
    assert (isvc["apiVersion"], meta["name"], meta["namespace"]) == (
        "serving.kserve.io/v1beta1",
        "assistant",
        NS,
    )
    assert meta["labels"]["kubetune.dev/kind"] == "FinetuneJob"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "kubetune-operator"
    [owner] = meta["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "FinetuneJob",
        "assistant",
        "uid-1",
        True,
    )
    assert predictor["model"] == {
        "modelFormat": {"name": "huggingface"},
        "runtime": "kserve-huggingfaceserver",
        "storageUri": OUT,
        "args": ["--max-model-len=4096"],
        "resources": {
            "requests": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "4", "memory": "16Gi", "nvidia.com/gpu": "1"},
        },
    }
    assert (predictor["serviceAccountName"], predictor["minReplicas"]) == ("models-reader", 1)
    assert "storageUris" not in predictor and "canaryTrafficPercent" not in predictor
    text = json.dumps(isvc).lower()
    assert "secret" not in text and "env" not in predictor["model"]
    assert kserve_status(result)["phase"] == "Publishing"
    assert serving_condition(result)["reason"] == "ServiceNotReady"


def test_a_lora_adapter_is_served_on_vllm_with_its_base_as_storage_uris() -> None:
    job = finetune(
        {"name": "support", "lora": {"extraModules": [{"name": "legal", "uri": "s3://a/legal"}]}}
    )
    predictor = the_service(plan(job, world(), CONFIG))["spec"]["predictor"]
    assert predictor["storageUris"] == [
        {"uri": "hf://org/base", "mountPath": "/mnt/models/base"},
        {"uri": OUT, "mountPath": "/mnt/models/adapters/support"},
        {"uri": "s3://a/legal", "mountPath": "/mnt/models/adapters/legal"},
    ]
    assert "storageUri" not in predictor["model"]
    assert predictor["model"]["args"] == [
        "--model_name=support-base",
        "--model_dir=/mnt/models/base",
        "--backend=vllm",
        "--enable-lora",
        "--lora-modules",
        "support=/mnt/models/adapters/support",
        "legal=/mnt/models/adapters/legal",
    ]


def test_an_explicit_base_and_adapter_name_win_and_a_merged_adapter_is_served_whole() -> None:
    job = finetune({"lora": {"baseModelUri": "s3://bases/llama", "adapterName": "tickets"}})
    predictor = the_service(plan(job, world(), CONFIG))["spec"]["predictor"]
    assert [s["uri"] for s in predictor["storageUris"]] == ["s3://bases/llama", OUT]
    assert "tickets=/mnt/models/adapters/tickets" in predictor["model"]["args"]

    merged = finetune(mergeAdapter=True)
    predictor = the_service(plan(merged, world(), CONFIG))["spec"]["predictor"]
    assert predictor["model"]["storageUri"] == f"{OUT}/merged"
    assert "storageUris" not in predictor


def test_a_compressed_model_is_served_whole() -> None:
    compression = Compression.model_validate(
        {
            "metadata": {"name": "assistant-nf4", "namespace": NS, "uid": "u2", "generation": 1},
            "spec": {
                "model": {"uri": "s3://models/assistant"},
                "steps": [{"quantize": {"bits": 4, "quantType": "nf4"}}],
                "publish": {"kserve": {}},
            },
        }
    )
    serving = ObservedServing(installed=True)
    observed = ObservedWorld(
        now=NOW, jobs=(succeeded("s3://out/nf4", "compress"),), serving=serving
    )
    isvc = the_service(plan(compression, observed, CONFIG))
    assert isvc["metadata"]["name"] == "assistant-nf4"
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == "s3://out/nf4"


def test_the_rendering_is_deterministic_and_each_oracle_catches_a_broken_object() -> None:
    job = finetune()
    first, second = the_service(plan(job, world(), CONFIG)), the_service(plan(job, world(), CONFIG))
    assert first == second
    broken = json.loads(json.dumps(first))
    broken["spec"]["predictor"]["model"]["storageUri"] = OUT  # beside storageUris
    assert kserve.webhook_errors(broken) == ["storageUri and storageUris are mutually exclusive"]
    broken["spec"]["predictor"]["model"]["storageUrl"] = OUT
    assert any("storageUrl" in e for e in kserve.errors(broken))
    broken = json.loads(json.dumps(first))
    broken["spec"]["predictor"]["storageUris"][1]["mountPath"] = "/adapters/x"
    assert "no common parent" in kserve.webhook_errors(broken)[0]
    broken["spec"]["predictor"]["canaryTrafficPercent"] = "ten"
    assert any("canaryTrafficPercent" in e for e in kserve.errors(broken))


# --- status from the observed InferenceService --------------------------------------------------


def test_a_ready_service_is_published_with_its_url_and_traffic_and_nothing_is_written() -> None:
    job = finetune()
    isvc = the_service(plan(job, world(), CONFIG))
    result = plan(job, world(reported(isvc)), CONFIG)
    assert (result.children, result.patches) == ([], [])
    entry = kserve_status(result)
    assert entry["phase"] == "Published"
    assert entry["url"] == "http://assistant.ml.example.com"
    assert entry["traffic"] == [{"revision": "assistant-predictor-00001", "percent": 100}]
    assert (entry["reference"], entry["version"]) == ("assistant", OUT)
    assert serving_condition(result)["status"] == "True"
    assert [e.reason for e in result.events if e.reason == "ServiceReady"] == ["ServiceReady"]


def test_a_changed_wish_patches_the_service_and_removes_fields_it_no_longer_sets() -> None:
    lora_isvc = the_service(plan(finetune(), world(), CONFIG))
    full = finetune(mergeAdapter=True)
    result = plan(full, world(reported(lora_isvc)), CONFIG)
    [patch] = [p for p in result.patches if p["kind"] == "InferenceService"]
    predictor = patch["spec"]["predictor"]
    assert predictor["storageUris"] is None and predictor["canaryTrafficPercent"] is None
    assert predictor["model"]["storageUri"] == f"{OUT}/merged"
    assert predictor["model"]["args"] is None
    wanted = render_service(
        full, full.spec.publish.kserve, served_model(full, full.spec.publish.kserve, OUT), None
    )  # type: ignore[union-attr]
    assert (
        patch["metadata"]["annotations"][ANNOTATION_SERVING_HASH]
        == (wanted["metadata"]["annotations"][ANNOTATION_SERVING_HASH])
    )
    assert kserve_status(result)["phase"] == "Publishing"


def test_nothing_is_served_before_the_model_is_complete() -> None:
    result = plan(finetune(), world(done=False), CONFIG)
    assert [c for c in result.children if c["kind"] == "InferenceService"] == []
    assert kserve_status(result)["phase"] == "Pending"
    assert serving_condition(result)["reason"] == "ModelNotReady"


# --- refusals -----------------------------------------------------------------------------------


def test_without_kserve_the_status_says_so_and_the_resource_is_rechecked() -> None:
    result = plan(finetune(), world(installed=False), CONFIG)
    assert [c for c in result.children if c["kind"] == "InferenceService"] == []
    condition = serving_condition(result)
    assert (condition["status"], condition["reason"]) == ("False", "KServeNotInstalled")
    assert "serving.kserve.io/v1beta1" in condition["message"]
    assert kserve_status(result)["phase"] == "Failed"
    assert ("Warning", "KServeNotInstalled") in [(e.type, e.reason) for e in result.events]
    assert result.requeue_after == CONFIG.dependency_recheck_seconds
    assert result.status["phase"] == "Succeeded"  # the model itself is fine


def test_an_existing_service_of_someone_else_is_left_alone() -> None:
    foreign = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "assistant", "namespace": NS},
        "spec": {
            "predictor": {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "gs://x"}}
        },
    }
    result = plan(finetune(), world(foreign), CONFIG)
    assert (result.patches, [c for c in result.children if c["kind"] == "InferenceService"]) == (
        [],
        [],
    )
    assert serving_condition(result)["reason"] == "ServiceConflict"
    assert "not managed by FinetuneJob/assistant" in kserve_status(result)["message"]


@pytest.mark.parametrize(
    ("job", "why"),
    [
        (
            finetune(model={"from": {"uri": "s3://models/earlier"}}),
            "base model is unknown: set publish.kserve.lora.baseModelUri",
        ),
        (finetune(method="full", lora=None, output={"uri": "file:///tmp/out"}), "cannot be served"),
    ],
)
def test_a_model_kserve_cannot_serve_fails_the_target_with_the_reason(
    job: FinetuneJob, why: str
) -> None:
    uri = (job.spec.output.uri or OUT) + "/g1" if job.spec.output.uri else OUT
    observed = ObservedWorld(now=NOW, jobs=(succeeded(uri),), serving=ObservedServing(True))
    result = plan(job, observed, CONFIG)
    assert serving_condition(result)["reason"] == "NotServable"
    assert why in kserve_status(result)["message"]


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ({"name": "Not_A_Name"}, "name"),
        ({"canary": {"trafficPercent": 100}}, "trafficPercent"),
        ({"minReplicas": 3, "maxReplicas": 2}, "minReplicas must not exceed maxReplicas"),
        ({"lora": {"extraModules": [{"name": "a", "uri": "s3://x"}] * 2}}, "must be unique"),
        ({"lora": {"baseModelUri": "ftp://x"}}, "baseModelUri"),
    ],
)
def test_bad_targets_are_refused_with_the_field(target: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        finetune(target)


# --- a FeedbackLoop's rollout -------------------------------------------------------------------

OLD, NEW = "s3://models/v1", "s3://models/c1"
BEFORE = Served(OLD, OLD, None)
PROMOTED = Served(NEW, NEW, 1)


def feedback_loop(
    rollout: dict[str, Any] | None = None,
    annotations: dict[str, str] | None = None,
    canary: dict[str, Any] | None = None,
) -> FeedbackLoop:
    target = {"name": "svc", "canary": canary or {"trafficPercent": 20, "soakSeconds": 600}}
    body: dict[str, Any] = {
        "metadata": {
            "name": "loop",
            "namespace": NS,
            "uid": "uid-3",
            "generation": 1,
            "annotations": annotations or {},
        },
        "spec": {
            **LOOP,
            "baseDataset": {"name": "tickets"},
            "promotion": {"publish": {"kserve": target}},
        },
    }
    if rollout is not None:
        body["status"] = {"rollout": rollout}
    return FeedbackLoop.model_validate(body)


def canary_rollout(started: datetime = NOW - timedelta(seconds=100)) -> dict[str, Any]:
    return {
        "phase": "Canary",
        "cycle": 1,
        "modelUri": NEW,
        "previousUri": OLD,
        "previousTrainingUri": OLD,
        "startTime": started.isoformat(),
        "message": "canary: 20% of the traffic until (soak end)",
    }


def served_by(
    loop: FeedbackLoop, uri: str, percent: int | None, ready: bool = True
) -> ObservedWorld:
    """The world where KServe serves ``uri`` (with ``percent`` canary) for the loop."""
    target = loop.spec.promotion.publish.kserve  # type: ignore[union-attr]
    assert target is not None
    isvc = render_service(loop, target, served_model(loop, target, uri), percent)
    assert kserve.errors(isvc) == []
    serving = ObservedServing(True, {"svc": reported(isvc, ready)})
    return ObservedWorld(now=NOW, serving=serving)


def loop_plan(loop: FeedbackLoop, observed: ObservedWorld, promoted: Served | None = None) -> Any:
    """Serving of the loop's champion (the promoted model, else the rollout's, else v1); every
    patch, applied to the observed InferenceService, gives an object KServe accepts."""
    target = loop.spec.promotion.publish.kserve  # type: ignore[union-attr]
    assert target is not None and observed.serving is not None
    rollout = loop.status.rollout if loop.status is not None else None
    champion = promoted or (Served(NEW, NEW, 1) if rollout is not None else BEFORE)
    result = plan_loop_serving(loop, target, observed, champion, promoted, BEFORE)
    for patch in result.patches:
        assert kserve.errors(merge(observed.serving.inference_services["svc"], patch)) == []
    return result


def merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(out.get(key), value)
    return out


def predictor_of(patch: dict[str, Any]) -> dict[str, Any]:
    return dict(patch["spec"]["predictor"])


def test_a_promotion_starts_a_canary_on_the_served_model() -> None:
    loop = feedback_loop()
    result = loop_plan(loop, served_by(loop, OLD, None), PROMOTED)
    assert (result.rollout.phase, result.rollout.previous_uri) == ("Canary", OLD)
    [patch] = result.patches
    predictor = predictor_of(patch)
    assert (predictor["model"]["storageUri"], predictor["canaryTrafficPercent"]) == (NEW, 20)
    assert result.events[0].reason == "CanaryStarted"
    assert result.revert is None


def test_a_promotion_with_nothing_served_yet_creates_the_service_with_all_traffic() -> None:
    loop = feedback_loop()
    result = loop_plan(loop, ObservedWorld(now=NOW, serving=ObservedServing(True)), PROMOTED)
    assert result.rollout.phase == "RolledOut"
    [isvc] = result.children
    assert isvc["spec"]["predictor"]["model"]["storageUri"] == NEW
    assert "canaryTrafficPercent" not in isvc["spec"]["predictor"]


def test_a_canary_soaks_until_its_time_and_its_readiness() -> None:
    loop = feedback_loop(canary_rollout())
    soaking = loop_plan(loop, served_by(loop, NEW, 20))
    assert (soaking.rollout.phase, soaking.patches, soaking.children) == ("Canary", [], [])
    assert soaking.requeue_after == pytest.approx(500)
    assert "canary: 20% of the traffic until" in soaking.status.message

    due = feedback_loop(canary_rollout(NOW - timedelta(seconds=600)))
    not_ready = loop_plan(due, served_by(due, NEW, 20, ready=False))
    assert (not_ready.rollout.phase, not_ready.patches) == ("Canary", [])

    done = loop_plan(due, served_by(due, NEW, 20))
    assert done.rollout.phase == "RolledOut"
    [patch] = done.patches
    assert predictor_of(patch)["canaryTrafficPercent"] is None
    assert predictor_of(patch)["model"]["storageUri"] == NEW
    assert [e.reason for e in done.events] == ["RolledOut", "ServiceNotReady"]


def test_only_the_canary_cycle_s_abort_annotation_rolls_back() -> None:
    other = feedback_loop(canary_rollout(), {ABORT_ROLLOUT_ANNOTATION: "c2"})
    assert loop_plan(other, served_by(other, NEW, 20)).rollout.phase == "Canary"

    aborted = feedback_loop(canary_rollout(), {ABORT_ROLLOUT_ANNOTATION: "c1"})
    result = loop_plan(aborted, served_by(aborted, NEW, 20))
    assert result.rollout.phase == "RolledBack"
    assert result.revert == Served(OLD, OLD, None)
    [patch] = result.patches
    predictor = predictor_of(patch)
    assert (predictor["model"]["storageUri"], predictor["canaryTrafficPercent"]) == (OLD, 0)
    assert (result.events[0].type, result.events[0].reason) == ("Warning", "RolloutAborted")


def test_without_canary_settings_a_promotion_switches_all_traffic() -> None:
    loop = feedback_loop()
    loop.spec.promotion.publish.kserve.canary = None  # type: ignore[union-attr]
    result = loop_plan(loop, served_by(loop, OLD, None), PROMOTED)
    assert result.rollout.phase == "RolledOut"
    [patch] = result.patches
    assert predictor_of(patch)["canaryTrafficPercent"] is None
    assert predictor_of(patch)["model"]["storageUri"] == NEW


def test_the_example_s_services_are_valid_for_kserve() -> None:
    documents = [d.doc for d in load_manifests([EXAMPLE])]
    job = FinetuneJob.model_validate(next(d for d in documents if d["kind"] == "FinetuneJob"))
    job = job.model_copy(update={"metadata": job.metadata.model_copy(update={"uid": "u"})})
    isvc = the_service(plan(job, world(), CONFIG))
    assert isvc["spec"]["predictor"]["serviceAccountName"] == "models-reader"
    assert "support=/mnt/models/adapters/support" in isvc["spec"]["predictor"]["model"]["args"]
    loop = FeedbackLoop.model_validate(next(d for d in documents if d["kind"] == "FeedbackLoop"))
    target = loop.spec.promotion.publish.kserve  # type: ignore[union-attr]
    assert target is not None and target.canary is not None
    champion = loop.spec.champion.uri
    assert champion is not None
    for percent in (None, target.canary.traffic_percent, 0):
        rendered = render_service(loop, target, served_model(loop, target, champion), percent)
        assert kserve.errors(rendered) == []


def test_the_local_runtime_reports_it_cannot_serve_and_does_not_wait_for_kserve() -> None:
    result = plan(finetune(), ObservedWorld(now=NOW, jobs=(succeeded(),)), CONFIG)
    condition = serving_condition(result)
    assert (condition["reason"], result.requeue_after) == ("NotInCluster", None)
    assert "this runtime does not serve models on KServe" in condition["message"]
    assert kserve_status(result)["phase"] == "Pending"  # `kubetune run` does not fail for it


def test_a_ready_condition_about_an_older_generation_is_not_ready() -> None:
    job = finetune()
    stale = reported(the_service(plan(job, world(), CONFIG)), observedGeneration=1)
    stale["metadata"]["generation"] = 2
    entry = kserve_status(plan(job, world(stale), CONFIG))
    assert entry["phase"] == "Publishing"
    assert "KServe has not seen generation 2" in entry["message"]
