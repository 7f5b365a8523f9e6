"""GPU-time accounting: each run's status.usage (requested GPUs/CPUs x wall time of its pods),
the Prometheus counters by namespace, kind and queue, and `kubetune status`'s usage lines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kubetune.api.resources import FinetuneJob
from kubetune.api.steps import StepResult
from kubetune.controllers import metrics
from kubetune.local.view import usage_lines
from kubetune.plan import ObservedJob, ObservedPod, ObservedWorld, OperatorConfig, plan

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def finetune(**resources: Any) -> FinetuneJob:
    return FinetuneJob.model_validate(
        {
            "metadata": {"name": "ft", "namespace": "ml", "uid": "u", "generation": 1},
            "spec": {
                "model": {"base": {"uri": "hf://org/base"}},
                "dataset": {"uri": "pvc://d/x"},
                "lora": {"r": 4},
                "resources": resources,
            },
        }
    )


def test_a_running_run_counts_whole_minutes_of_its_pods() -> None:
    pods = (
        ObservedPod("a", "Running", start_time=NOW - timedelta(minutes=10, seconds=30)),
        ObservedPod("b", "Running", start_time=NOW - timedelta(minutes=5)),
    )
    job = ObservedJob("ft-finetune-g1", "g1", active=2, start_time=NOW, pods=pods)
    resource = finetune(gpus=2, nodes=2, cpu="500m", queueName="team-a")
    status = plan(resource, ObservedWorld(now=NOW, jobs=(job,)), OperatorConfig()).status
    seconds = 15 * 60  # 10m30s + 5m, in whole minutes
    assert status["usage"] == {
        "gpuSeconds": 2 * seconds,
        "cpuSeconds": 0.5 * seconds,
        "gpus": 4,
        "queue": "team-a",
    }


def test_a_finished_run_keeps_its_usage_and_default_requests_count() -> None:
    result = StepResult(step="finetune", ok=True, reason="Completed").termination_message()
    pod = ObservedPod("a", "Succeeded", termination_message=result, start_time=NOW)
    job = ObservedJob(
        "ft-finetune-g1",
        "g1",
        succeeded=1,
        conditions=({"type": "Complete", "status": "True"},),
        start_time=NOW,
        completion_time=NOW + timedelta(seconds=90),
        pods=(pod,),
    )
    world = ObservedWorld(now=NOW + timedelta(hours=1), jobs=(job,))
    status = plan(finetune(gpus=1), world, OperatorConfig()).status
    assert status["usage"]["gpuSeconds"] == 90.0
    assert status["usage"]["cpuSeconds"] == 4 * 90.0  # the finetune-gpu default request
    # The Job is gone (TTL): the usage stays in the status.
    kept = finetune(gpus=1).model_copy(update={"status": None})
    body = {**kept.body(), "status": status}
    gone = FinetuneJob.model_validate(body)
    again = plan(gone, ObservedWorld(now=NOW + timedelta(days=8)), OperatorConfig()).status
    assert again["usage"] == status["usage"]


def _value(name: str, labels: dict[str, str]) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_counters_by_namespace_kind_and_queue() -> None:
    labels = {"namespace": "acct", "kind": "FinetuneJob", "queue": "team-a"}
    before = _value("kubetune_gpu_seconds_total", labels)
    usage = {"gpuSeconds": 7200.0, "cpuSeconds": 3600.0, "gpus": 2, "queue": "team-a"}
    metrics.record_finished_run("FinetuneJob", "acct", "Succeeded", 3600, usage)
    assert _value("kubetune_gpu_seconds_total", labels) == before + 7200
    assert _value("kubetune_cpu_seconds_total", labels) >= 3600


def test_kubetune_status_prints_gpu_and_cpu_hours_per_namespace() -> None:
    bodies = [
        {"metadata": {"namespace": "ml"}, "status": {"usage": {"gpuSeconds": 7200}}},
        {"metadata": {"namespace": "ml"}, "status": {"usage": {"cpuSeconds": 1800}}},
        {"metadata": {"namespace": "x"}, "status": {}},
    ]
    assert usage_lines(bodies) == ["usage ml: 2.00 GPU-hours, 0.50 CPU-hours (2 runs)"]
