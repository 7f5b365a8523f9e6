"""A parallel Dataset (spec.parallelism 3) against the real operator and the API emulator: a map
stage as one Indexed Job of 3 pods, then a reduce Job, status per stage, a map index retried
alone, and a map index failing for good."""

from __future__ import annotations

import json
from typing import Any

from tests.emulator import Emulator, Kubelet
from tests.emulator.k8sutils import now_rfc3339
from tests.integration.conftest import (
    DATASETS,
    JOBS,
    NS,
    OperatorFactory,
    condition,
    dataset,
    jobs_of,
    status_of,
    step_result,
    wait_job,
    wait_phase,
)

MAP = "tickets-dataprep-map-g1"
REDUCE = "tickets-dataprep-reduce-g1"
INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


# --- an Indexed Job's pods, moved by hand as the job controller and kubelet would -------------


def index_pod(emu: Emulator, kubelet: Kubelet, job: str, index: int) -> str:
    """A Running pod of index ``index`` of an Indexed Job; returns its name."""
    pod = kubelet.create_pod(NS, job)
    name = str(pod["metadata"]["name"])
    emu.patch("pods", NS, name, {"metadata": {"annotations": {INDEX_ANNOTATION: str(index)}}})
    now = now_rfc3339()
    running = {"running": {"startedAt": now}}
    emu.patch_status(
        "pods",
        NS,
        name,
        {"phase": "Running", "startTime": now, "containerStatuses": [_container(running)]},
    )
    return name


def end_pod(emu: Emulator, pod: str, result: dict[str, Any], exit_code: int = 0) -> None:
    """The pod's container exits with ``exit_code`` and the step result as its message."""
    now = now_rfc3339()
    terminated = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "message": json.dumps(result),
        "startedAt": now,
        "finishedAt": now,
    }
    phase = "Succeeded" if exit_code == 0 else "Failed"
    emu.patch_status(
        "pods",
        NS,
        pod,
        {"phase": phase, "containerStatuses": [_container({"terminated": terminated})]},
    )


def _container(state: dict[str, Any]) -> dict[str, Any]:
    running = "running" in state
    return {
        "name": "step",
        "image": "registry.example/kubetune-cpu:test",
        "imageID": "",
        "ready": running,
        "started": running,
        "restartCount": 0,
        "state": state,
    }


def job_status(emu: Emulator, job: str, **status: Any) -> None:
    emu.patch_status(JOBS, NS, job, status)


def job_condition(type_: str, reason: str, message: str = "") -> dict[str, Any]:
    now = now_rfc3339()
    return {
        "type": type_,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": now,
        "lastTransitionTime": now,
    }


def complete(emu: Emulator, job: str, pods: int) -> None:
    job_status(
        emu,
        job,
        active=None,
        succeeded=pods,
        completedIndexes=f"0-{pods - 1}",
        completionTime=now_rfc3339(),
        conditions=[
            job_condition("SuccessCriteriaMet", "CompletionsReached"),
            job_condition("Complete", "CompletionsReached"),
        ],
    )


def map_result(rank: int) -> dict[str, Any]:
    return step_result("dataprep", details={"stage": "map", "rank": rank, "tasks": 3})


def stages_of(emu: Emulator) -> list[dict[str, Any]]:
    return list((emu.get(DATASETS, NS, "tickets") or {}).get("status", {}).get("stages") or [])


def wait_stages(emu: Emulator, *expected: tuple[str, int, int]) -> list[dict[str, Any]]:
    """Wait until status.stages shows (phase, completed, failed) per stage, in order."""

    def matches(obj: dict[str, Any]) -> bool:
        stages = (obj.get("status") or {}).get("stages") or []
        seen = [(s["phase"], s["completed"], s["failed"]) for s in stages]
        return seen == list(expected)

    emu.wait_for(DATASETS, NS, "tickets", matches, timeout=15)
    return stages_of(emu)


# --- tests ------------------------------------------------------------------------------------


def test_three_map_pods_then_reduce_then_ready_with_status_per_stage(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        emu.create(DATASETS, dataset(parallelism=3), admit=True)
        job = wait_job(emu, MAP)
        spec = job["spec"]
        assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == (
            "Indexed",
            3,
            3,
        )
        assert spec["backoffLimitPerIndex"] == 2  # a failed pod is retried for its index only
        env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0]["env"]}
        assert env["KUBETUNE_DATAPREP_STAGE"] == "map"
        assert env["KUBETUNE_DATAPREP_TASKS"] == "3"
        shards = "s3://kubetune-test/default/dataset/tickets/.g1.shards-g1"
        assert env["KUBETUNE_DATAPREP_SHARDS"] == shards
        assert job["metadata"]["labels"]["kubetune.dev/stage"] == "map"
        stages = wait_stages(emu, ("Pending", 0, 0), ("NotStarted", 0, 0))
        assert [(s["name"], s["total"], s["job"]) for s in stages] == [
            ("map", 3, MAP),
            ("reduce", 1, REDUCE),
        ]

        pods = [index_pod(emu, kubelet, MAP, i) for i in range(3)]
        job_status(emu, MAP, active=3, ready=3)
        running = wait_phase(emu, DATASETS, "tickets", "Running")
        assert "stage 1/2 map" in running["status"]["message"]
        for rank in (0, 2):
            end_pod(emu, pods[rank], map_result(rank))
        job_status(emu, MAP, active=1, ready=1, succeeded=2, completedIndexes="0,2")
        wait_stages(emu, ("Running", 2, 0), ("NotStarted", 0, 0))
        assert emu.get(JOBS, NS, REDUCE) is None  # the reduce waits for every map index

        end_pod(emu, pods[1], map_result(1))
        complete(emu, MAP, 3)
        reduce = wait_job(emu, REDUCE)
        reduce_env = reduce["spec"]["template"]["spec"]["containers"][0]["env"]
        assert {"name": "KUBETUNE_DATAPREP_STAGE", "value": "reduce"} in reduce_env
        assert {"name": "KUBETUNE_DATAPREP_SHARDS", "value": shards} in reduce_env
        assert reduce["spec"]["completionMode"] == "NonIndexed"  # one pod
        assert reduce["metadata"]["ownerReferences"][0]["kind"] == "Dataset"
        wait_stages(emu, ("Succeeded", 3, 0), ("Pending", 0, 0))
        between = status_of(emu, DATASETS, "tickets")
        assert between["phase"] == "Running"  # the run goes on: no step back to Pending
        assert "stage 2/2 reduce" in between["message"]

        kubelet.start(NS, REDUCE)
        kubelet.succeed(
            NS,
            REDUCE,
            step_result(
                "dataprep",
                outputUri="s3://kubetune-test/default/dataset/tickets/g1",
                details={"records": 1200, "version": "v0123456789ab"},
            ),
        )
        ready = wait_phase(emu, DATASETS, "tickets", "Ready", "Completed")
        assert ready["status"]["records"] == 1200
        assert ready["status"]["version"] == "v0123456789ab"
        assert condition(ready["status"], "Ready")["status"] == "True"
        wait_stages(emu, ("Succeeded", 3, 0), ("Succeeded", 1, 0))
    assert sorted(j["metadata"]["name"] for j in jobs_of(emu, "Dataset", "tickets")) == [
        MAP,
        REDUCE,
    ]


def test_a_failed_map_index_is_retried_alone_then_the_run_goes_on(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        emu.create(DATASETS, dataset(parallelism=3), admit=True)
        wait_job(emu, MAP)
        pods = [index_pod(emu, kubelet, MAP, i) for i in range(3)]
        job_status(emu, MAP, active=3, ready=3)
        failure = step_result(
            "dataprep", ok=False, reason="StorageError", message="cannot read s3://raw: reset"
        )
        end_pod(emu, pods[1], failure, exit_code=1)
        retried = index_pod(emu, kubelet, MAP, 1)  # the job controller recreates index 1 only
        job_status(emu, MAP, active=3, ready=3, failed=1)
        running = wait_phase(emu, DATASETS, "tickets", "Running")
        wait_stages(emu, ("Running", 0, 1), ("NotStarted", 0, 0))
        running = emu.wait_for(
            DATASETS, NS, "tickets", lambda o: "retry 1" in o["status"]["message"], timeout=15
        )
        assert "StorageError" in running["status"]["message"]
        assert "cannot read s3://raw: reset" in running["status"]["message"]

        for pod, rank in ((pods[0], 0), (retried, 1), (pods[2], 2)):
            end_pod(emu, pod, map_result(rank))
        job_status(emu, MAP, failed=1)
        complete(emu, MAP, 3)
        wait_job(emu, REDUCE)
        wait_stages(emu, ("Succeeded", 3, 1), ("Pending", 0, 0))


def test_a_map_index_failing_for_good_fails_the_run_with_its_reason(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        emu.create(DATASETS, dataset(parallelism=3), admit=True)
        wait_job(emu, MAP)
        pods = [index_pod(emu, kubelet, MAP, i) for i in range(3)]
        end_pod(emu, pods[0], map_result(0))
        bad = step_result(
            "dataprep",
            ok=False,
            reason="TooManyMalformedRecords",
            message="312 of 1000 records are malformed (maxErrorRatio 0.05)",
        )
        end_pod(emu, pods[2], bad, exit_code=2)  # permanent: the podFailurePolicy fails the Job
        job_status(
            emu,
            MAP,
            active=None,
            succeeded=1,
            failed=1,
            conditions=[
                job_condition("FailureTarget", "PodFailurePolicy", "exit code 2 matching FailJob"),
                job_condition("Failed", "PodFailurePolicy", "exit code 2 matching FailJob"),
            ],
        )
        failed = wait_phase(emu, DATASETS, "tickets", "Failed", "TooManyMalformedRecords")
        assert "312 of 1000 records are malformed" in failed["status"]["message"]
        assert "stage 1/2 map" in failed["status"]["message"]
        wait_stages(emu, ("Failed", 1, 1), ("NotStarted", 0, 0))
        assert emu.get(JOBS, NS, REDUCE) is None
