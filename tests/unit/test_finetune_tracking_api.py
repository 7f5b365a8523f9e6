"""spec.tracking.mlflow: validated, its Secret handed to the pod by reference only, and a
finished run's report, TensorBoard files and MLflow run in status and in `kubetune run`."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubetune.api.finetune import MlflowRun
from kubetune.api.resources import FeedbackLoop, FinetuneJob
from kubetune.api.steps import FinetuneStepSpec, StepResult
from kubetune.local.view import summary_lines
from kubetune.plan import plan
from kubetune.plan.feedback.children import cycle_finetune
from kubetune.schema.validation import validate_against_crd, validate_document
from test_plan_kinds import CONFIG, META, finished, ready_dataset, step_spec, world

from tests.helpers.local_manifests import LOOP

MLFLOW = {"trackingUri": "https://mlflow.example.com", "experiment": "support"}
SECRET = {"secretKeyRef": {"name": "mlflow-auth", "key": "password"}}
USER = {"secretKeyRef": {"name": "mlflow-auth", "key": "username"}}


def manifest(mlflow: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FinetuneJob",
        "metadata": {"name": "tuned", **META},
        "spec": {
            "model": {"base": {"uri": "hf://org/base"}},
            "dataset": {"uri": "pvc://d/x"},
            "lora": {"r": 4},
            "tracking": {"mlflow": mlflow},
        },
    }


def job(mlflow: dict[str, Any]) -> FinetuneJob:
    return FinetuneJob.model_validate(manifest(mlflow))


def _env(result: Any) -> dict[str, dict[str, Any]]:
    container = result.children[-1]["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e for e in container["env"]}


def test_basic_auth_reaches_the_pod_as_secret_refs_only() -> None:
    result = plan(
        job({**MLFLOW, "credentials": {"username": USER, "password": SECRET}}), world(), CONFIG
    )
    env = _env(result)
    assert env["MLFLOW_TRACKING_USERNAME"]["valueFrom"] == USER
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"] == SECRET
    assert "MLFLOW_TRACKING_TOKEN" not in env
    spec = step_spec(result)
    assert isinstance(spec, FinetuneStepSpec) and spec.spec.tracking is not None
    assert spec.spec.tracking.mlflow is not None
    assert spec.spec.tracking.mlflow.tracking_uri == MLFLOW["trackingUri"]


def test_a_token_is_the_bearer_env_and_no_tracking_adds_no_env() -> None:
    token = {"secretKeyRef": {"name": "mlflow-token", "key": "token"}}
    env = _env(plan(job({**MLFLOW, "credentials": {"token": token}}), world(), CONFIG))
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"] == token
    bare = manifest(MLFLOW)
    del bare["spec"]["tracking"]
    env = _env(plan(FinetuneJob.model_validate(bare), world(), CONFIG))
    assert not [name for name in env if name.startswith("MLFLOW_")]


@pytest.mark.parametrize(
    ("mlflow", "needle"),
    [
        ({**MLFLOW, "trackingUri": "https://bob:hunter2@mlflow.example.com"}, "Secret"),
        ({**MLFLOW, "trackingUri": "mlflow.example.com"}, "trackingUri"),
        ({"trackingUri": MLFLOW["trackingUri"]}, "experiment"),
        ({**MLFLOW, "credentials": {"username": USER}}, "username and password"),
    ],
)
def test_bad_tracking_blocks_are_refused_with_the_field(
    mlflow: dict[str, Any], needle: str
) -> None:
    errors = [str(e) for e in validate_document(manifest(mlflow))]
    assert errors and any(needle in e for e in errors), errors


def test_the_crd_refuses_credentials_in_the_uri() -> None:
    bad = manifest({**MLFLOW, "trackingUri": "https://bob:hunter2@mlflow.example.com"})
    assert validate_against_crd(bad) != []
    assert validate_against_crd(manifest(MLFLOW)) == []


def test_a_finished_run_reports_its_report_event_files_and_mlflow_run() -> None:
    mlflow_run = MlflowRun(
        run_id="abc123",
        experiment_id="7",
        url="https://mlflow.example.com/#/experiments/7/runs/abc123",
    )
    outcome = StepResult(
        step="finetune",
        ok=True,
        reason="Completed",
        output_uri="pvc://m/tuned/g1",
        report_uri="pvc://m/tuned/g1/training-report.html",
        tensorboard_uri="pvc://m/tuned/tensorboard/g1",
        mlflow_run=mlflow_run,
    )
    result = plan(job(MLFLOW), world(jobs=(finished(outcome),)), CONFIG)
    status = result.status
    assert status["phase"] == "Succeeded"
    assert status["reportUri"] == "pvc://m/tuned/g1/training-report.html"
    assert status["tensorboardUri"] == "pvc://m/tuned/tensorboard/g1"
    assert status["mlflow"] == {"runId": "abc123", "experimentId": "7", "url": mlflow_run.url}

    body = copy.deepcopy(manifest(MLFLOW))
    body["status"] = status
    lines = summary_lines([body])
    assert "    report: pvc://m/tuned/g1/training-report.html" in lines
    assert "    tensorboard: pvc://m/tuned/tensorboard/g1" in lines
    assert f"    mlflow run: {mlflow_run.url}" in lines


def test_a_feedback_loop_cycle_tracks_like_its_template() -> None:
    body = copy.deepcopy(LOOP)
    body["metadata"]["namespace"] = "default"
    body["spec"]["finetune"]["tracking"] = {"mlflow": {**MLFLOW, "credentials": {"token": USER}}}
    loop = FeedbackLoop.model_validate(body)
    cycle = FinetuneJob.model_validate(cycle_finetune(loop, 1, "file:///tmp/model"))
    assert cycle.spec.tracking == loop.spec.finetune.tracking
    env = _env(plan(cycle, world(ready_dataset(cycle.spec.dataset.name or "")), CONFIG))
    assert env["MLFLOW_TRACKING_TOKEN"]["valueFrom"] == USER
