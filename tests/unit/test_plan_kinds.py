"""Per-kind planning: Dataset, Compression and Evaluation references and results."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import kubernetes_validate
from kubetune.api.resources import (
    Compression,
    Dataset,
    Evaluation,
    FeedbackLoop,
    FinetuneJob,
)
from kubetune.api.steps import (
    CompressStepSpec,
    DataprepStepSpec,
    EvaluateStepSpec,
    StepResult,
    parse_step_spec,
)
from kubetune.plan import (
    ObservedJob,
    ObservedPod,
    ObservedWorld,
    OperatorConfig,
    Plan,
    plan,
    referenced_config_maps,
    referenced_resources,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)
CONFIG = OperatorConfig()
META = {"namespace": "ml", "uid": "uid-1", "generation": 1}


def done_status(kind: str, uri: str, phase: str = "done") -> dict[str, Any]:
    done = "Ready" if kind == "Dataset" else "Succeeded"
    ok = phase == "done"
    return {
        "phase": (done if ok else "Running"),
        "observedGeneration": 1,
        "outputUri": uri if ok else None,
        "artifactHash": f"sha256:{uri[-4:]}" if ok else None,
        "conditions": [
            {
                "type": done,
                "status": "True" if ok else "Unknown",
                "reason": "Completed" if ok else "Running",
                "observedGeneration": 1,
            }
        ],
    }


def model_job(name: str, phase: str = "done") -> FinetuneJob:
    return FinetuneJob.model_validate(
        {
            "metadata": {"name": name, **META},
            "spec": {
                "model": {"base": {"uri": "hf://org/base"}},
                "dataset": {"uri": "pvc://d/x"},
                "lora": {"r": 4},
            },
            "status": done_status("FinetuneJob", f"pvc://models/{name}", phase),
        }
    )


def ready_dataset(name: str) -> Dataset:
    return Dataset.model_validate(
        {
            "metadata": {"name": name, **META},
            "spec": {"sources": [{"uri": "pvc://raw/a.jsonl"}]},
            "status": done_status("Dataset", f"pvc://data/{name}"),
        }
    )


def world(*resources: Any, **kw: Any) -> ObservedWorld:
    return ObservedWorld(now=NOW, resources={(r.kind, r.name): r for r in resources}, **kw)


def step_spec(result: Plan) -> Any:
    for obj in result.children:
        kubernetes_validate.validate(obj, "1.32", strict=True)
    config_map = next(c for c in result.children if c["kind"] == "ConfigMap")
    return parse_step_spec(config_map["data"]["spec.json"])


def finished(result: StepResult) -> ObservedJob:
    pod = ObservedPod("p", "Succeeded", termination_message=result.termination_message())
    return ObservedJob(
        name="x",
        run_id="g1",
        succeeded=1,
        conditions=({"type": "Complete", "status": "True"},),
        start_time=NOW - timedelta(minutes=1),
        completion_time=NOW,
        pods=(pod,),
    )


def cond(result: Plan, type_: str) -> dict[str, Any]:
    return next(c for c in result.status["conditions"] if c["type"] == type_)


# --- Dataset -------------------------------------------------------------------------------


def test_dataset_is_ready_with_version_records_tokens_and_stage_counts() -> None:
    resource = Dataset.model_validate(
        {"metadata": {"name": "support", **META}, "spec": {"sources": [{"uri": "pvc://raw/a"}]}}
    )
    start = plan(resource, world(), CONFIG)
    spec = step_spec(start)
    assert isinstance(spec, DataprepStepSpec)
    assert spec.output_uri == "pvc://kubetune-artifacts/ml/dataset/support/g1"
    result = StepResult(
        step="dataprep",
        ok=True,
        reason="Completed",
        output_uri=spec.output_uri,
        content_hash="sha256:abc",
        details={
            "version": "v-abc",
            "records": 900,
            "tokens": 51234,
            "stageCounts": {"exactDedup": 40, "pii": 3},
        },
    )
    ready = plan(resource, world(jobs=(finished(result),)), CONFIG)
    status = ready.status
    assert status["phase"] == "Ready"
    assert cond(ready, "Ready")["status"] == "True"
    assert status["version"] == "v-abc"
    assert (status["records"], status["tokens"]) == (900, 51234)
    assert status["stageCounts"] == {"exactDedup": 40, "pii": 3}
    assert status["artifactHash"] == "sha256:abc"


def test_dataset_with_a_tokenizer_from_a_finetune_job_waits_for_it() -> None:
    resource = Dataset.model_validate(
        {
            "metadata": {"name": "support", **META},
            "spec": {
                "sources": [{"uri": "pvc://raw/a"}],
                "tokenizer": {
                    "model": {"kind": "FinetuneJob", "name": "tok"},
                    "maxTokens": 512,
                },
            },
        }
    )
    waiting = plan(resource, world(model_job("tok", "running")), CONFIG)
    assert cond(waiting, "Waiting")["reason"] == "ModelNotReady"
    assert cond(waiting, "Ready")["status"] == "False"
    spec = step_spec(plan(resource, world(model_job("tok")), CONFIG))
    assert spec.tokenizer_uri == "pvc://models/tok"


# --- Compression ---------------------------------------------------------------------------


def compression(**spec: Any) -> Compression:
    body = {"model": {"kind": "FinetuneJob", "name": "ft"}, "steps": [{"quantize": {"bits": 4}}]}
    body.update(spec)
    return Compression.model_validate({"metadata": {"name": "small", **META}, "spec": body})


def test_compression_waits_for_its_model_then_resolves_model_and_dataset() -> None:
    resource = compression(
        dataset={"name": "data"}, report={"maxPerplexityIncrease": 0.1}, resources={"gpus": 1}
    )
    waiting = plan(resource, world(model_job("ft", "running")), CONFIG)
    assert waiting.status["phase"] == "Waiting"
    assert cond(waiting, "Waiting")["reason"] == "ModelNotReady"
    assert "FinetuneJob/ft" in cond(waiting, "Waiting")["message"]
    assert "Dataset/data" in cond(waiting, "Waiting")["message"]
    spec = step_spec(plan(resource, world(model_job("ft"), ready_dataset("data")), CONFIG))
    assert isinstance(spec, CompressStepSpec)
    assert spec.model.uri == "pvc://models/ft"
    assert spec.model.content_hash == "sha256:s/ft"
    assert spec.dataset is not None and spec.dataset.uri == "pvc://data/data"


def test_compression_reports_size_ratio_and_perplexity_delta() -> None:
    result = StepResult(
        step="compress",
        ok=True,
        reason="Completed",
        output_uri="pvc://x/y",
        metrics={"sizeRatio": 0.31, "perplexityDelta": 0.2, "latencyMs": 12.0},
    )
    done = plan(compression(), world(model_job("ft"), jobs=(finished(result),)), CONFIG)
    assert done.status["phase"] == "Succeeded"
    assert done.status["sizeRatio"] == 0.31
    assert done.status["perplexityDelta"] == 0.2


# --- Evaluation ----------------------------------------------------------------------------


def evaluation(**spec: Any) -> Evaluation:
    body: dict[str, Any] = {
        "candidate": {"kind": "FinetuneJob", "name": "cand"},
        "baseline": {"kind": "FinetuneJob", "name": "base"},
        "prompts": {"inline": [{"prompt": "hi", "expected": "hello"}]},
        "metrics": [{"name": "exactMatch"}],
    }
    body.update(spec)
    return Evaluation.model_validate({"metadata": {"name": "eval", **META}, "spec": body})


def test_evaluation_waits_for_candidate_and_baseline() -> None:
    result = plan(evaluation(), world(model_job("cand", "running")), CONFIG)
    message = cond(result, "Waiting")["message"]
    assert "candidate FinetuneJob/cand" in message
    assert "baseline FinetuneJob/base does not exist" in message
    assert result.children == []


def test_evaluation_reads_prompt_cases_from_its_configmap() -> None:
    resource = evaluation(prompts={"configMap": {"name": "cases"}})
    models = (model_job("cand"), model_job("base"))
    missing = plan(resource, world(*models), CONFIG)
    assert cond(missing, "Waiting")["reason"] == "ConfigMapNotFound"
    lines = [{"prompt": "2+2?", "expected": "4"}, {"messages": [{"role": "user", "content": "hi"}]}]
    data = {"prompts.jsonl": "\n".join(json.dumps(x) for x in lines) + "\n"}
    ready = plan(resource, world(*models, config_maps={"cases": data}), CONFIG)
    spec = step_spec(ready)
    assert isinstance(spec, EvaluateStepSpec)
    assert spec.candidate.uri == "pvc://models/cand"
    assert spec.baseline is not None and spec.baseline.uri == "pvc://models/base"
    assert spec.extra_cases is not None
    assert [c.prompt for c in spec.extra_cases] == ["2+2?", None]
    assert referenced_config_maps(resource) == {"cases"}


def test_invalid_prompt_cases_in_the_configmap_name_the_line() -> None:
    resource = evaluation(prompts={"configMap": {"name": "cases"}})
    data = {"prompts.jsonl": '{"prompt": "ok"}\n{"prompt": "a", "messages": []}\n'}
    result = plan(
        resource, world(model_job("cand"), model_job("base"), config_maps={"cases": data}), CONFIG
    )
    waiting = cond(result, "Waiting")
    assert waiting["reason"] == "ConfigMapInvalid"
    assert "line 2" in waiting["message"]
    assert [e.type for e in result.events] == ["Warning"]
    broken = {"prompts.jsonl": "{not json\n"}
    result = plan(
        resource, world(model_job("cand"), model_job("base"), config_maps={"cases": broken}), CONFIG
    )
    assert cond(result, "Waiting")["reason"] == "ConfigMapInvalid"


def test_evaluation_judge_key_comes_from_the_secret() -> None:
    resource = evaluation(
        metrics=[{"name": "judge"}],
        judge={
            "url": "https://judge.example/v1",
            "model": "grader",
            "apiKey": {"secretKeyRef": {"name": "judge", "key": "key"}},
        },
    )
    result = plan(resource, world(model_job("cand"), model_job("base")), CONFIG)
    spec = step_spec(result)
    assert spec.judge_api_key_env == "KUBETUNE_JUDGE_API_KEY"
    job = result.children[-1]
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["KUBETUNE_JUDGE_API_KEY"] == {
        "name": "KUBETUNE_JUDGE_API_KEY",
        "valueFrom": {"secretKeyRef": {"name": "judge", "key": "key"}},
    }


def test_failed_gates_are_a_passed_false_condition_naming_them() -> None:
    outcome = StepResult(
        step="evaluate",
        ok=True,
        reason="Completed",
        output_uri="pvc://e/1",
        metrics={"exactMatch": 0.4},
        passed=False,
        failed_gates=["exactMatch>=0.6"],
        report_uri="pvc://e/1/report.html",
    )
    models = (model_job("cand"), model_job("base"))
    result = plan(evaluation(), world(*models, jobs=(finished(outcome),)), CONFIG)
    status = result.status
    assert status["phase"] == "Succeeded"
    assert status["passed"] is False
    assert status["failedGates"] == ["exactMatch>=0.6"]
    assert status["reportUri"] == "pvc://e/1/report.html"
    passed = cond(result, "Passed")
    assert passed["status"] == "False"
    assert "exactMatch>=0.6" in passed["message"]
    assert ("Warning", "GatesFailed") in [(e.type, e.reason) for e in result.events]


# --- FeedbackLoop and references ----------------------------------------------------------


def feedback_loop() -> FeedbackLoop:
    return FeedbackLoop.model_validate(
        {
            "metadata": {"name": "loop", **META},
            "spec": {
                "feedback": {"uri": "s3://fb/"},
                "baseDataset": {"name": "data"},
                "champion": {"kind": "FinetuneJob", "name": "cand"},
                "finetune": {"lora": {"r": 4}},
                "evaluation": {
                    "prompts": {"inline": [{"prompt": "x"}]},
                    "metrics": [{"name": "length"}],
                    "gates": [{"metric": "length", "max": 100}],
                },
                "triggers": {"minNewRecords": 100},
            },
        }
    )


def test_referenced_resources_lists_every_dependency() -> None:
    resource = evaluation(
        prompts={"dataset": {"name": "prompts"}},
        perplexityData={"name": "ppl"},
        metrics=[{"name": "perplexity"}],
    )
    assert referenced_resources(resource) == {
        ("FinetuneJob", "cand"),
        ("FinetuneJob", "base"),
        ("Dataset", "prompts"),
        ("Dataset", "ppl"),
    }
    assert referenced_resources(feedback_loop()) == {("Dataset", "data"), ("FinetuneJob", "cand")}
