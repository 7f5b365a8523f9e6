"""Reading Job and Pod API objects into the observed world, end to end with the planner."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubetune.api.resources import FinetuneJob
from kubetune.api.steps import StepResult
from kubetune.plan import ObservedWorld, OperatorConfig, observe_job, observe_pod, plan

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def resource() -> FinetuneJob:
    return FinetuneJob.model_validate(
        {
            "metadata": {"name": "ft", "namespace": "ml", "uid": "u", "generation": 1},
            "spec": {
                "model": {"base": {"uri": "hf://org/base"}},
                "dataset": {"uri": "pvc://data/d"},
                "lora": {"r": 8},
            },
        }
    )


def created_job() -> dict[str, Any]:
    """The Job the planner asks for, as the API server returns it."""
    result = plan(resource(), ObservedWorld(now=NOW), OperatorConfig())
    job = dict(result.children[-1])
    job["metadata"] = dict(job["metadata"], uid="job-uid")
    return job


def pod(state: dict[str, Any], phase: str, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "ft-finetune-g1-abcde"},
        "status": {
            "phase": phase,
            "startTime": "2025-01-01T00:00:00Z",
            "containerStatuses": [{"name": "step", "state": state}],
            **status,
        },
    }


def test_a_pod_killed_for_memory() -> None:
    observed = observe_pod(pod({"terminated": {"reason": "OOMKilled", "exitCode": 137}}, "Failed"))
    assert observed.terminated_reason == "OOMKilled"
    assert observed.exit_code == 137
    assert observed.start_time == datetime(2025, 1, 1, tzinfo=UTC)


def test_waiting_and_unschedulable_pods() -> None:
    pulling = observe_pod(
        pod({"waiting": {"reason": "ErrImagePull", "message": "not found"}}, "Pending")
    )
    assert (pulling.waiting_reason, pulling.waiting_message) == ("ErrImagePull", "not found")
    unschedulable = {
        "metadata": {"name": "p"},
        "status": {
            "phase": "Pending",
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "0/2 nodes are available",
                }
            ],
        },
    }
    assert observe_pod(unschedulable).unschedulable_message == "0/2 nodes are available"


def test_the_created_job_reads_back_as_the_same_run() -> None:
    job = created_job()
    observed = observe_job(job)
    assert observed.run_id == "g1"
    assert observed.spec_hash == job["metadata"]["annotations"]["kubetune.dev/spec-hash"]
    assert observed.suspended is False


def test_a_completed_job_with_its_pod_gives_the_results() -> None:
    job = created_job()
    result = StepResult(
        step="finetune", ok=True, reason="Completed", output_uri="pvc://m/1", metrics={"loss": 0.3}
    )
    job["status"] = {
        "succeeded": 1,
        "startTime": "2025-01-01T00:00:00Z",
        "completionTime": "2025-01-01T00:10:00Z",
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    finished = pod(
        {
            "terminated": {
                "reason": "Completed",
                "exitCode": 0,
                "message": result.termination_message(),
            }
        },
        "Succeeded",
    )
    world = ObservedWorld(now=NOW, jobs=(observe_job(job, [finished]),))
    status = plan(resource(), world, OperatorConfig()).status
    assert status["phase"] == "Succeeded"
    assert status["results"] == {"loss": 0.3}
    assert status["outputUri"] == "pvc://m/1"
    assert status["completionTime"] == "2025-01-01T00:10:00Z"
