"""Status from the world: waiting, running, results, failures with precise reasons, new runs,
suspend, and events on transitions only (FinetuneJob as the example runnable kind)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from kubetune.api.resources import Dataset, FinetuneJob
from kubetune.api.steps import LiveProgress, StepResult
from kubetune.plan import ObservedJob, ObservedPod, ObservedWorld, OperatorConfig, Plan, plan

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
CONFIG = OperatorConfig()
OUT = "pvc://kubetune-artifacts/ml/finetunejob/ft/g1"


def dataset(
    phase: str = "Ready", generation: int = 1, observed: int = 1, artifact_hash: str | None = None
) -> Dataset:
    done = {"Ready": "True", "Failed": "False"}.get(phase, "False")
    reason = {"Ready": "Completed", "Failed": "OOMKilled"}.get(phase, "Running")
    return Dataset.model_validate(
        {
            "metadata": {"name": "data", "namespace": "ml", "uid": "d", "generation": generation},
            "spec": {"sources": [{"uri": "pvc://raw/a.jsonl"}]},
            "status": {
                "phase": phase,
                "observedGeneration": observed,
                "outputUri": "pvc://data/ml/data/g1" if phase == "Ready" else None,
                "artifactHash": artifact_hash,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": done,
                        "reason": reason,
                        "message": "killed" if phase == "Failed" else "",
                        "observedGeneration": observed,
                    }
                ],
            },
        }
    )


def finetune(generation: int = 1, status: dict[str, Any] | None = None, **spec: Any) -> FinetuneJob:
    body: dict[str, Any] = {
        "model": {"base": {"uri": "hf://org/base"}},
        "dataset": {"name": "data"},
        "lora": {"r": 8},
    }
    body.update(spec)
    return FinetuneJob.model_validate(
        {
            "metadata": {"name": "ft", "namespace": "ml", "uid": "f", "generation": generation},
            "spec": body,
            "status": status,
        }
    )


def world(*jobs: ObservedJob, data: Dataset | None = None, **kw: Any) -> ObservedWorld:
    resources = {("Dataset", "data"): data or dataset()}
    return ObservedWorld(now=NOW, resources=resources, jobs=jobs, **kw)


def job(run_id: str = "g1", **kw: Any) -> ObservedJob:
    fields: dict[str, Any] = {
        "name": f"ft-finetune-{run_id}",
        "run_id": run_id,
        "start_time": NOW - timedelta(minutes=5),
    }
    fields.update(kw)
    return ObservedJob(**fields)


def succeeded_job(result: StepResult, run_id: str = "g1") -> ObservedJob:
    pod = ObservedPod("p", "Succeeded", termination_message=result.termination_message())
    return job(
        run_id,
        succeeded=1,
        conditions=({"type": "Complete", "status": "True"},),
        completion_time=NOW,
        pods=(pod,),
    )


def failed_job(reason: str, *pods: ObservedPod, message: str = "") -> ObservedJob:
    cond = {"type": "Failed", "status": "True", "reason": reason, "message": message}
    return job(failed=len(pods), conditions=(cond,), pods=pods)


def cond(result: Plan, type_: str) -> dict[str, Any]:
    conditions: list[dict[str, Any]] = result.status["conditions"]
    return next(c for c in conditions if c["type"] == type_)


def then(resource: FinetuneJob, result: Plan, **spec: Any) -> FinetuneJob:
    """The resource after the shell wrote the plan's status (optionally with a new spec)."""
    body = resource.body()
    body["status"] = result.status
    body["spec"].update(spec)
    return FinetuneJob.model_validate(body)


# --- dependencies ------------------------------------------------------------------------


def test_waits_for_a_missing_dataset_without_creating_anything() -> None:
    resource = finetune()
    result = plan(resource, ObservedWorld(now=NOW), CONFIG)
    assert result.children == []
    assert result.status["phase"] == "Waiting"
    waiting = cond(result, "Waiting")
    assert waiting["status"] == "True"
    assert waiting["reason"] == "DatasetNotFound"
    assert "Dataset/data" in waiting["message"]
    assert cond(result, "Succeeded")["status"] == "Unknown"
    assert result.requeue_after == CONFIG.dependency_recheck_seconds


def test_waits_while_the_dataset_is_not_ready_for_its_current_generation() -> None:
    running = plan(finetune(), world(data=dataset("Running")), CONFIG)
    assert cond(running, "Waiting")["reason"] == "DatasetNotReady"
    stale = plan(finetune(), world(data=dataset("Ready", generation=2, observed=1)), CONFIG)
    assert cond(stale, "Waiting")["reason"] == "DatasetNotReady"
    assert stale.children == []


def test_a_failed_dataset_is_a_warning_not_an_error() -> None:
    result = plan(finetune(), world(data=dataset("Failed")), CONFIG)
    assert result.status["phase"] == "Waiting"
    assert cond(result, "Waiting")["reason"] == "DatasetFailed"
    assert "OOMKilled" in cond(result, "Waiting")["message"]
    assert [e.type for e in result.events] == ["Warning"]


def test_proceeds_once_the_dataset_is_ready() -> None:
    resource = finetune()
    waiting = plan(resource, world(data=dataset("Running")), CONFIG)
    result = plan(then(resource, waiting), world(), CONFIG)
    assert [c["kind"] for c in result.children] == ["ConfigMap", "Job"]
    assert result.status["phase"] == "Pending"
    assert cond(result, "Waiting")["status"] == "False"
    assert cond(result, "Waiting")["lastTransitionTime"] == NOW.isoformat().replace("+00:00", "Z")
    assert [e.reason for e in result.events] == ["Starting"]


def test_from_model_waits_for_the_earlier_job_to_succeed() -> None:
    resource = finetune(model={"from": {"kind": "FinetuneJob", "name": "base-ft"}})
    missing = plan(resource, world(), CONFIG)
    assert cond(missing, "Waiting")["reason"] == "ModelNotFound"
    earlier = finetune(
        status={
            "phase": "Succeeded",
            "observedGeneration": 1,
            "outputUri": "pvc://models/base-ft",
            "artifactHash": "sha256:m",
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "True",
                    "reason": "Completed",
                    "observedGeneration": 1,
                }
            ],
        }
    ).model_copy(update={"metadata": finetune().metadata.model_copy(update={"name": "base-ft"})})
    ready = replace(world(), resources={**world().resources, ("FinetuneJob", "base-ft"): earlier})
    result = plan(resource, ready, CONFIG)
    assert result.status["phase"] == "Pending"
    assert '"uri": "pvc://models/base-ft"' in result.children[0]["data"]["spec.json"]


# --- running and results -------------------------------------------------------------------


def test_replanning_with_the_job_present_creates_nothing() -> None:
    resource = finetune()
    first = plan(resource, world(), CONFIG)
    running = job(active=1, pods=(ObservedPod("p", "Running"),))
    again = plan(then(resource, first), world(running), CONFIG)
    assert again.children == [] and again.patches == [] and again.deletions == []
    assert again.status["phase"] == "Running"


def test_running_shows_live_progress_and_keeps_transition_times() -> None:
    resource = finetune()
    progress = LiveProgress(step=10, total_steps=100, loss=1.5, eta_seconds=90)
    running = job(active=1, pods=(ObservedPod("p", "Running"),))
    first = plan(resource, world(running, progress=progress), CONFIG)
    assert first.status["progress"]["step"] == 10
    assert first.status["progress"]["loss"] == 1.5
    assert "step 10/100" in cond(first, "Running")["message"]
    assert first.requeue_after == CONFIG.progress_interval_seconds
    later = replace(
        world(running, progress=progress.model_copy(update={"step": 20})),
        now=NOW + timedelta(minutes=1),
    )
    second = plan(then(resource, first), later, CONFIG)
    assert second.status["progress"]["step"] == 20
    assert (
        cond(second, "Running")["lastTransitionTime"]
        == cond(first, "Running")["lastTransitionTime"]
    )
    assert second.events == []


def test_success_fills_results_from_the_termination_message() -> None:
    resource = finetune()
    result = StepResult(
        step="finetune",
        ok=True,
        reason="Completed",
        message="trained 100 steps",
        output_uri=OUT,
        content_hash="sha256:model",
        metrics={"trainLoss": 0.42, "evalLoss": 0.5},
    )
    done = plan(resource, world(succeeded_job(result)), CONFIG)
    status = done.status
    assert status["phase"] == "Succeeded"
    assert status["outputUri"] == OUT
    assert status["artifactHash"] == "sha256:model"
    assert status["results"] == {"trainLoss": 0.42, "evalLoss": 0.5}
    assert status["completionTime"] is not None
    assert cond(done, "Succeeded")["status"] == "True"
    assert cond(done, "Running")["status"] == "False"
    assert [e.reason for e in done.events] == ["Completed"]
    again = plan(then(resource, done), world(succeeded_job(result)), CONFIG)
    assert again.events == [] and again.children == []


def test_a_finished_run_whose_job_was_cleaned_up_is_not_run_again() -> None:
    resource = finetune()
    result = StepResult(
        step="finetune", ok=True, reason="Completed", output_uri=OUT, metrics={"a": 1.0}
    )
    done = plan(resource, world(succeeded_job(result)), CONFIG)
    after_ttl = plan(then(resource, done), world(), CONFIG)
    assert after_ttl.children == []
    assert after_ttl.status["phase"] == "Succeeded"
    assert after_ttl.status["outputUri"] == OUT
    assert after_ttl.status["results"] == {"a": 1.0}
    assert after_ttl.events == []


# --- failures ------------------------------------------------------------------------------


def test_oom_killed() -> None:
    pod = ObservedPod("p", "Failed", terminated_reason="OOMKilled", exit_code=137)
    result = plan(finetune(), world(failed_job("BackoffLimitExceeded", pod)), CONFIG)
    assert result.status["phase"] == "Failed"
    assert cond(result, "Succeeded") | {"lastTransitionTime": None, "message": ""} == {
        "type": "Succeeded",
        "status": "False",
        "reason": "OOMKilled",
        "message": "",
        "observedGeneration": 1,
        "lastTransitionTime": None,
    }
    assert "memory" in result.status["message"]
    assert [e.type for e in result.events] == ["Warning"]


def test_the_workloads_own_reason_and_message_win_over_backoff() -> None:
    failure = StepResult(
        step="finetune", ok=False, reason="NaNLoss", message="loss became NaN at step 7"
    )
    pod = ObservedPod("p", "Failed", termination_message=failure.termination_message(), exit_code=1)
    result = plan(finetune(), world(failed_job("BackoffLimitExceeded", pod)), CONFIG)
    assert cond(result, "Succeeded")["reason"] == "NaNLoss"
    assert result.status["message"] == "loss became NaN at step 7"


def test_backoff_limit_with_a_log_tail_names_the_last_log_line() -> None:
    logs = "loading\nTraceback (most recent call last):\nRuntimeError: CUDA error: bad\n"
    pod = ObservedPod(
        "p", "Failed", termination_message=logs, terminated_reason="Error", exit_code=1
    )
    result = plan(finetune(), world(failed_job("BackoffLimitExceeded", pod)), CONFIG)
    assert cond(result, "Succeeded")["reason"] == "BackoffLimitExceeded"
    assert result.status["message"] == "RuntimeError: CUDA error: bad"


def test_deadline_exceeded() -> None:
    pod = ObservedPod("p", "Failed", last_log_line="step 40/100")
    result = plan(
        finetune(activeDeadlineSeconds=60),
        world(
            failed_job(
                "DeadlineExceeded", pod, message="Job was active longer than specified deadline"
            )
        ),
        CONFIG,
    )
    assert cond(result, "Succeeded")["reason"] == "DeadlineExceeded"
    assert "longer than specified deadline" in result.status["message"]
    assert "step 40/100" in result.status["message"]


def test_image_pull_errors_and_unschedulable_pods_are_reported_while_pending() -> None:
    pulling = ObservedPod(
        "p",
        "Pending",
        waiting_reason="ImagePullBackOff",
        waiting_message='Back-off pulling image "x"',
    )
    result = plan(finetune(), world(job(active=1, pods=(pulling,))), CONFIG)
    assert result.status["phase"] == "Pending"
    assert cond(result, "Succeeded")["reason"] == "ImagePullBackOff"
    assert "Back-off pulling image" in result.status["message"]
    assert [e.type for e in result.events] == ["Warning"]
    message = "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    stuck = ObservedPod("p", "Pending", unschedulable_message=message)
    result = plan(finetune(), world(job(active=1, pods=(stuck,))), CONFIG)
    assert cond(result, "Succeeded")["reason"] == "Unschedulable"
    assert result.status["message"] == message


def test_a_finished_pod_before_the_job_is_marked_complete_is_still_running() -> None:
    started = NOW - timedelta(minutes=2)
    pod = ObservedPod("p", "Succeeded", terminated_reason="Completed", exit_code=0)
    result = plan(finetune(), world(job(active=0, pods=(pod,), start_time=started)), CONFIG)
    assert result.status["phase"] == "Running"
    assert "finishing" in result.status["message"]


def test_a_retry_in_progress_says_why_the_last_attempt_failed() -> None:
    pods = (
        ObservedPod("p1", "Failed", terminated_reason="OOMKilled", exit_code=137, start_time=NOW),
        ObservedPod("p2", "Running", start_time=NOW + timedelta(seconds=5)),
    )
    result = plan(finetune(), world(job(active=1, failed=1, pods=pods)), CONFIG)
    assert result.status["phase"] == "Running"
    assert "OOMKilled" in result.status["message"]


# --- runs, history, suspend ----------------------------------------------------------------


def test_a_new_artifact_upstream_reruns_the_same_generation() -> None:
    resource = finetune()
    ok = StepResult(step="finetune", ok=True, reason="Completed", output_uri=OUT)
    first = plan(resource, world(), CONFIG)
    digest = first.children[-1]["metadata"]["annotations"]["kubetune.dev/spec-hash"]
    done_job = replace(succeeded_job(ok), spec_hash=digest)
    done = plan(then(resource, first), world(done_job), CONFIG)
    assert done.status["phase"] == "Succeeded" and done.status["runId"] == "g1"
    # Re-planning with the same inputs changes nothing.
    again = plan(then(resource, done), world(done_job), CONFIG)
    assert again.children == [] and again.status["runId"] == "g1"
    # The Dataset was prepared again and produced a new artifact: the job re-runs on it.
    fresh = dataset("Ready", artifact_hash="sha256:new-data")
    rerun = plan(then(resource, done), world(done_job, data=fresh), CONFIG)
    assert rerun.status["runId"].startswith("g1-") and rerun.status["phase"] == "Pending"
    assert [c["kind"] for c in rerun.children] == ["ConfigMap", "Job"]
    assert [h["runId"] for h in rerun.status["history"]] == ["g1"]


def test_a_spec_change_starts_a_new_run_and_keeps_the_old_one_in_history() -> None:
    resource = finetune()
    ok = StepResult(
        step="finetune", ok=True, reason="Completed", output_uri=OUT, metrics={"loss": 1.0}
    )
    first = plan(resource, world(), CONFIG)
    digest = first.children[-1]["metadata"]["annotations"]["kubetune.dev/spec-hash"]
    old_job = replace(succeeded_job(ok), spec_hash=digest)
    done = plan(resource, world(old_job), CONFIG)
    changed = then(resource, done, hyperparameters={"epochs": 2})
    changed.metadata.generation = 2
    result = plan(changed, world(old_job), CONFIG)
    assert result.status["runId"] == "g2"
    assert result.status["phase"] == "Pending"
    assert result.status["completionTime"] is None
    assert result.status["outputUri"] is None
    assert [c["metadata"]["name"] for c in result.children] == [
        "ft-finetune-g2-spec",
        "ft-finetune-g2",
    ]
    history = result.status["history"]
    assert [h["runId"] for h in history] == ["g1"]
    assert history[0]["phase"] == "Succeeded" and history[0]["outputUri"] == OUT
    assert result.deletions == []  # the finished Job stays until its TTL
    assert "NewRun" in [e.reason for e in result.events]


def test_a_spec_change_during_a_run_deletes_the_superseded_job() -> None:
    resource = finetune()
    created = plan(resource, world(), CONFIG)
    digest = created.children[-1]["metadata"]["annotations"]["kubetune.dev/spec-hash"]
    running = job(active=1, pods=(ObservedPod("p", "Running"),), spec_hash=digest)
    first = plan(resource, world(running), CONFIG)
    changed = then(resource, first, hyperparameters={"epochs": 3})
    changed.metadata.generation = 2
    result = plan(changed, world(running), CONFIG)
    assert result.deletions == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "ft-finetune-g1", "namespace": "ml"},
        }
    ]
    record = result.status["history"][0]
    assert record["runId"] == "g1" and record["reason"] == "Superseded"


def test_suspend_creates_a_suspended_job_and_patches_a_running_one() -> None:
    suspended = finetune(suspend=True)
    result = plan(suspended, world(), CONFIG)
    assert result.status["phase"] == "Suspended"
    assert result.children[-1]["spec"]["suspend"] is True

    resource = finetune()
    first = plan(resource, world(), CONFIG)
    spec_hash = first.children[-1]["metadata"]["annotations"]["kubetune.dev/spec-hash"]
    running = job(active=1, pods=(ObservedPod("p", "Running"),), spec_hash=spec_hash)
    toggled = then(resource, first, suspend=True)
    toggled.metadata.generation = 2
    result = plan(toggled, world(running), CONFIG)
    assert result.status["runId"] == "g1"  # suspending is not a new run
    assert result.children == [] and result.deletions == []
    assert result.patches == [
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "ft-finetune-g1", "namespace": "ml"},
            "spec": {"suspend": True},
        }
    ]
    assert result.status["phase"] == "Suspended"

    paused = replace(running, suspended=True, active=0, pods=())
    resumed = then(toggled, result, suspend=False)
    resumed.metadata.generation = 3
    result = plan(resumed, world(paused), CONFIG)
    assert result.patches[0]["spec"] == {"suspend": False}
    assert result.status["runId"] == "g1"


def test_kueue_owns_unsuspending_a_queued_job() -> None:
    resource = finetune(resources={"queueName": "team-a"})
    first = plan(resource, world(), CONFIG)
    spec_hash = first.children[-1]["metadata"]["annotations"]["kubetune.dev/spec-hash"]
    queued = job(suspended=True, spec_hash=spec_hash)
    result = plan(then(resource, first), world(queued), CONFIG)
    assert result.patches == []
    assert result.status["phase"] == "Pending"
    assert cond(result, "Succeeded")["reason"] == "Queued"
    assert "team-a" in result.status["message"]


def test_observed_generation_is_on_status_and_every_condition() -> None:
    resource = finetune(generation=4)
    result = plan(resource, world(), CONFIG)
    assert result.status["observedGeneration"] == 4
    assert result.status["runId"] == "g4"
    assert {c["observedGeneration"] for c in result.status["conditions"]} == {4}
