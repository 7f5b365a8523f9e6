"""A FeedbackLoop run by the real operator against the API emulator, its Jobs completed by the
test kubelet: counting feedback until enough has arrived, a whole cycle (collect Job, then the
Dataset, FinetuneJob, Compression and Evaluation it owns) ending in a promotion that patches a
Deployment, a rejected challenger, a failed child, a restart in the middle of a cycle, and the
deletion of the loop.

The planners read "now" from a clock the tests move by hand, so a count interval passes at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from kopf.testing import KopfRunner
from kubetune.controllers import metrics

from tests.emulator import Emulator, Kubelet
from tests.helpers.clock import Clock
from tests.integration.conftest import (
    COMPRESSIONS,
    DATASETS,
    EVALUATIONS,
    FEEDBACKLOOPS,
    FINETUNEJOBS,
    JOBS,
    NS,
    condition,
    jobs_of,
    operator_registry,
    run_operator_registry,
    step_result,
    succeeded_finetune,
    wait_event,
    wait_job,
)

LOOP = "loop"
CYCLE = f"{LOOP}-c1"
COLLECT = f"{LOOP}-feedback-c1"
DEPLOYMENTS = "deployments.apps"
SERVER = "server"
CHAMPION_URI = "s3://kubetune-test/assistant"  # the output of conftest's FinetuneJob
CHALLENGER_URI = "s3://out/loop-c1-nf4"
INTERVAL = 30
CHILDREN = (
    (DATASETS, f"{CYCLE}-dataprep-g1"),
    (FINETUNEJOBS, f"{CYCLE}-finetune-g1"),
    (COMPRESSIONS, f"{CYCLE}-compress-g1"),
    (EVALUATIONS, f"{CYCLE}-evaluate-g1"),
)


LoopOperator = Callable[[], AbstractContextManager[KopfRunner]]


@pytest.fixture()
def clock() -> Clock:
    return Clock()


@pytest.fixture()
def loop_operator(emu: Emulator, clock: Clock, tmp_path: Path) -> LoopOperator:
    """``with loop_operator(): ...`` runs the real operator with the test's clock."""

    def start() -> AbstractContextManager[KopfRunner]:
        registry = operator_registry(emu, tmp_path, clock=clock)
        return run_operator_registry(emu, registry)

    return start


def loop_manifest(min_new_records: int = 5) -> dict[str, Any]:
    gpu = {"gpus": 1}
    return {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FeedbackLoop",
        "metadata": {"name": LOOP, "namespace": NS},
        "spec": {
            "feedback": {"uri": "s3://feedback/app/"},
            "baseDataset": {"name": "tickets"},
            "champion": {"kind": "FinetuneJob", "name": "assistant"},
            "finetune": {"method": "lora", "lora": {"r": 8}, "resources": gpu},
            "compression": {
                "steps": [{"quantize": {"bits": 4, "quantType": "nf4"}}],
                "resources": gpu,
            },
            "evaluation": {
                "prompts": {"uri": "s3://raw/eval.jsonl"},
                "metrics": [{"name": "rougeL"}],
                "gates": [{"metric": "rougeL", "maxRegression": 0.0}],
                "resources": gpu,
            },
            "triggers": {"minNewRecords": min_new_records, "checkIntervalSeconds": INTERVAL},
            "promotion": {
                "mode": "patch",
                "target": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": SERVER,
                    "fieldPath": "spec.template.metadata.annotations.model-uri",
                },
            },
        },
    }


def server_deployment() -> dict[str, Any]:
    labels = {"app": SERVER}
    return {
        "metadata": {"name": SERVER, "namespace": NS},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {"model-uri": CHAMPION_URI}},
                "spec": {"containers": [{"name": "serve", "image": "registry.example/serve"}]},
            },
        },
    }


def served_model(emu: Emulator) -> str | None:
    deployment = emu.get(DEPLOYMENTS, NS, SERVER) or {}
    template = deployment.get("spec", {}).get("template", {})
    return str(template.get("metadata", {}).get("annotations", {}).get("model-uri"))


def loop_status(emu: Emulator) -> dict[str, Any]:
    return dict((emu.get(FEEDBACKLOOPS, NS, LOOP) or {}).get("status") or {})


def wait_loop(emu: Emulator, check: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    found = emu.wait_for(FEEDBACKLOOPS, NS, LOOP, lambda o: check(o.get("status") or {}))
    return dict(found["status"])


def count_jobs(emu: Emulator) -> list[str]:
    """The loop's count Jobs (run ids ``s<cycle>-<slot>``), oldest first."""
    found = [
        (job["metadata"]["labels"]["kubetune.dev/run-id"], job["metadata"]["name"])
        for job in jobs_of(emu, "FeedbackLoop", LOOP)
    ]
    return [name for run_id, name in sorted(found) if run_id.startswith("s")]


def wait_new_count_job(emu: Emulator, seen: list[str]) -> str:
    found = emu.wait_for(FEEDBACKLOOPS, NS, LOOP, lambda _: set(count_jobs(emu)) - set(seen))
    assert found
    return next(name for name in reversed(count_jobs(emu)) if name not in seen)


def count(emu: Emulator, kubelet: Kubelet, job: str, pending: int) -> None:
    kubelet.succeed(NS, job, step_result("feedback", metrics={"pendingRecords": pending}))


def start_world(emu: Emulator, kubelet: Kubelet) -> None:
    """The champion (a Succeeded FinetuneJob on the Ready base Dataset), the served Deployment
    and the loop."""
    succeeded_finetune(emu, kubelet)
    emu.create(DEPLOYMENTS, server_deployment())
    emu.create(FEEDBACKLOOPS, loop_manifest(), admit=True)


def start_cycle(emu: Emulator, kubelet: Kubelet) -> None:
    """Enough feedback at the first count: cycle c1 collects, then its resources appear."""
    count(emu, kubelet, wait_new_count_job(emu, []), pending=9)
    wait_job(emu, COLLECT)
    kubelet.succeed(NS, COLLECT, step_result("feedback", metrics={"usedRecords": 9}))
    for resource in (DATASETS, FINETUNEJOBS, COMPRESSIONS, EVALUATIONS):
        emu.wait_for(resource, NS, CYCLE, timeout=15)


def run_children(emu: Emulator, kubelet: Kubelet, evaluation: dict[str, Any]) -> None:
    """Complete the cycle's Jobs in dependency order, the Evaluation with ``evaluation``."""
    results = {
        DATASETS: step_result("dataprep", outputUri="s3://out/loop-c1-data"),
        FINETUNEJOBS: step_result("finetune", outputUri="s3://out/loop-c1", metrics={"loss": 1}),
        COMPRESSIONS: step_result("compress", outputUri=CHALLENGER_URI),
        EVALUATIONS: evaluation,
    }
    for resource, job in CHILDREN:
        wait_job(emu, job)
        kubelet.succeed(NS, job, results[resource])


def test_enough_feedback_runs_a_cycle_that_promotes_its_challenger(
    emu: Emulator, kubelet: Kubelet, loop_operator: LoopOperator, clock: Clock
) -> None:
    with loop_operator():
        start_world(emu, kubelet)
        first = wait_new_count_job(emu, [])
        count(emu, kubelet, first, pending=2)
        status = wait_loop(emu, lambda s: s.get("pendingRecords") == 2)
        assert status["phase"] == "Ready"
        assert (status["cycles"], status.get("activeRuns")) == (0, None)
        assert "2/5 new feedback records" in condition(status, "Cycling")["message"]
        assert emu.get(JOBS, NS, COLLECT) is None

        clock.advance(INTERVAL)  # the next count is due: a change of the loop wakes it now
        emu.patch(FEEDBACKLOOPS, NS, LOOP, {"metadata": {"annotations": {"test/poke": "1"}}})
        second = wait_new_count_job(emu, [first])
        emu.wait_for_absence(JOBS, NS, first)  # a finished count is deleted with its spec
        emu.wait_for_absence("configmaps", NS, f"{first}-spec")
        count(emu, kubelet, second, pending=7)

        collect = wait_job(emu, COLLECT)
        assert collect["metadata"]["labels"]["kubetune.dev/run-id"] == "c1"
        status = wait_loop(emu, lambda s: s.get("activeRuns") == ["c1"])
        assert (status["phase"], status["cycles"]) == ("Running", 1)
        assert "7 new feedback records" in wait_event(emu, LOOP, "CycleStarted")[2]
        kubelet.succeed(NS, COLLECT, step_result("feedback", metrics={"usedRecords": 7}))

        loop_uid = emu.get(FEEDBACKLOOPS, NS, LOOP)["metadata"]["uid"]  # type: ignore[index]
        for resource in (DATASETS, FINETUNEJOBS, COMPRESSIONS, EVALUATIONS):
            child = emu.wait_for(resource, NS, CYCLE, timeout=15)
            owner = child["metadata"]["ownerReferences"][0]
            assert (owner["kind"], owner["name"], owner["uid"]) == ("FeedbackLoop", LOOP, loop_uid)
            labels = child["metadata"]["labels"]
            assert (labels["kubetune.dev/feedback-loop"], labels["kubetune.dev/cycle"]) == (
                LOOP,
                "1",
            )
        evaluation = emu.get(EVALUATIONS, NS, CYCLE)
        assert evaluation is not None
        assert evaluation["spec"]["baseline"] == {"uri": CHAMPION_URI}
        assert evaluation["spec"]["candidate"] == {"kind": "Compression", "name": CYCLE}

        run_children(emu, kubelet, step_result("evaluate", metrics={"rougeL": 0.6}, passed=True))
        status = wait_loop(emu, lambda s: s.get("championCycle") == 1)
        assert status["champion"] == CHALLENGER_URI
        assert status["championTrainingUri"] == "s3://out/loop-c1"
        assert (status["phase"], status["generation"], status.get("activeRuns")) == (
            "Ready",
            1,
            None,
        )
        [record] = status["history"]
        assert (record["runId"], record["phase"], record["reason"]) == (
            "c1",
            "Succeeded",
            "Promoted",
        )
        assert record["results"] == {"rougeL": 0.6, "records": 7.0}
        assert served_model(emu) == CHALLENGER_URI
        assert wait_event(emu, LOOP, "Promoted")[0] == "Normal"
        # The next count is of the records since c1 collected.
        since_c1 = f"{LOOP}-feedback-s1-"
        emu.wait_for(
            FEEDBACKLOOPS, NS, LOOP, lambda _: any(n.startswith(since_c1) for n in count_jobs(emu))
        )
    assert [r.name for r in emu.requests("PATCH", DEPLOYMENTS)] == [SERVER]
    labels = {"namespace": NS, "name": LOOP}
    assert metrics.REGISTRY.get_sample_value("kubetune_feedback_promotions_total", labels) == 1
    assert metrics.REGISTRY.get_sample_value("kubetune_feedback_cycles", labels) == 1


def test_a_challenger_that_fails_a_gate_is_not_promoted(
    emu: Emulator, kubelet: Kubelet, loop_operator: LoopOperator
) -> None:
    with loop_operator():
        start_world(emu, kubelet)
        start_cycle(emu, kubelet)
        rejected = step_result(
            "evaluate", metrics={"rougeL": 0.1}, passed=False, failedGates=["rougeL"]
        )
        run_children(emu, kubelet, rejected)
        status = wait_loop(emu, lambda s: s.get("generation") == 1)
        [record] = status["history"]
        assert (record["phase"], record["reason"]) == ("Succeeded", "Rejected")
        assert "failed gates: rougeL" in record["message"]
        assert (status["champion"], status.get("championCycle")) == (CHAMPION_URI, None)
        assert (status["phase"], condition(status, "Ready")["status"]) == ("Ready", "True")
        assert "failed gates" in wait_event(emu, LOOP, "CycleRejected")[2]
    assert served_model(emu) == CHAMPION_URI
    assert emu.requests("PATCH", DEPLOYMENTS) == []


def test_a_failed_child_fails_the_cycle_and_the_loop_stays_ready(
    emu: Emulator, kubelet: Kubelet, loop_operator: LoopOperator
) -> None:
    with loop_operator():
        start_world(emu, kubelet)
        start_cycle(emu, kubelet)
        wait_job(emu, f"{CYCLE}-dataprep-g1")
        kubelet.succeed(NS, f"{CYCLE}-dataprep-g1", step_result("dataprep", outputUri="s3://d"))
        wait_job(emu, f"{CYCLE}-finetune-g1")
        kubelet.fail(NS, f"{CYCLE}-finetune-g1", "OOMKilled")
        status = wait_loop(emu, lambda s: s.get("generation") == 1)
        [record] = status["history"]
        assert (record["phase"], record["reason"]) == ("Failed", "FinetuneJobFailed")
        assert "OOMKilled" in record["message"]
        assert (status["phase"], condition(status, "Ready")["status"]) == ("Ready", "True")
        assert status["champion"] == CHAMPION_URI
        kind, _, message = wait_event(emu, LOOP, "CycleFailed")
        assert kind == "Warning" and f"FinetuneJob {CYCLE} failed" in message
    assert emu.get(JOBS, NS, f"{CYCLE}-compress-g1") is None


def test_a_restart_in_the_middle_of_a_cycle_creates_each_child_once_and_converges(
    emu: Emulator, kubelet: Kubelet, loop_operator: LoopOperator
) -> None:
    with loop_operator():
        start_world(emu, kubelet)
        job = wait_new_count_job(emu, [])
        wait_loop(emu, lambda s: s.get("phase") == "Ready")
        # The operator dies after creating the collect Job, before writing the status.
        fault = emu.faults.fail("patch", FEEDBACKLOOPS, subresource="status", count=10_000)
        count(emu, kubelet, job, pending=9)
        wait_job(emu, COLLECT)
        emu.wait_for(FEEDBACKLOOPS, NS, LOOP, lambda _: fault.hits >= 2, timeout=15)
    emu.faults.clear()
    assert loop_status(emu)["cycles"] == 0
    kubelet.succeed(NS, COLLECT, step_result("feedback", metrics={"usedRecords": 9}))
    with loop_operator():  # adopts c1 (no c2), creates its resources
        status = wait_loop(emu, lambda s: s.get("activeRuns") == ["c1"])
        assert status["cycles"] == 1
        for resource in (DATASETS, FINETUNEJOBS, COMPRESSIONS, EVALUATIONS):
            emu.wait_for(resource, NS, CYCLE, timeout=15)
        wait_job(emu, f"{CYCLE}-dataprep-g1")
    kubelet.succeed(NS, f"{CYCLE}-dataprep-g1", step_result("dataprep", outputUri="s3://d"))
    with loop_operator():
        run_children(emu, kubelet, step_result("evaluate", metrics={"rougeL": 0.6}, passed=True))
        status = wait_loop(emu, lambda s: s.get("championCycle") == 1)
        assert [r["reason"] for r in status["history"]] == ["Promoted"]
    names = [j["metadata"]["name"] for j in emu.objects(JOBS, NS)]
    assert len(names) == len(set(names))
    assert [n for n in names if "-c2" in n] == []
    for resource in (DATASETS, FINETUNEJOBS, COMPRESSIONS, EVALUATIONS):
        owned = emu.objects(resource, NS, labels=f"kubetune.dev/feedback-loop={LOOP}")
        assert [o["metadata"]["name"] for o in owned] == [CYCLE]
    assert served_model(emu) == CHALLENGER_URI


def test_deleting_the_loop_deletes_its_cycles(
    emu: Emulator, kubelet: Kubelet, loop_operator: LoopOperator
) -> None:
    with loop_operator():
        start_world(emu, kubelet)
        start_cycle(emu, kubelet)
        wait_job(emu, f"{CYCLE}-dataprep-g1")
        emu.delete(FEEDBACKLOOPS, NS, LOOP)
        emu.wait_for_absence(FEEDBACKLOOPS, NS, LOOP, timeout=15)
        for resource in (DATASETS, FINETUNEJOBS, COMPRESSIONS, EVALUATIONS):
            emu.wait_for_absence(resource, NS, CYCLE, timeout=15)
        emu.wait_for_absence(JOBS, NS, COLLECT, timeout=15)
        emu.wait_for_absence(JOBS, NS, f"{CYCLE}-dataprep-g1", timeout=15)
        # The loop's inputs are the user's: untouched.
        assert emu.get(DATASETS, NS, "tickets") is not None
        assert emu.get(FINETUNEJOBS, NS, "assistant") is not None
        assert served_model(emu) == CHAMPION_URI


LOOP_FAULTS: dict[str, Callable[[Emulator], Any]] = {
    "child-create-500": lambda e: e.faults.server_error("create", FINETUNEJOBS, count=3),
    "child-create-409": lambda e: e.faults.conflict("create", EVALUATIONS, count=1),
    "collect-create-429": lambda e: e.faults.throttle("create", JOBS, retry_after=1, count=1),
    "loop-status-409": lambda e: e.faults.conflict(
        "patch", FEEDBACKLOOPS, subresource="status", count=3
    ),
    "promotion-patch-500": lambda e: e.faults.server_error("patch", DEPLOYMENTS, count=2),
}


@pytest.mark.parametrize("fault", sorted(LOOP_FAULTS))
def test_api_faults_during_a_cycle_converge_to_one_promotion(
    fault: str, emu: Emulator, kubelet: Kubelet, loop_operator: LoopOperator
) -> None:
    with loop_operator():
        start_world(emu, kubelet)
        rule = LOOP_FAULTS[fault](emu)
        start_cycle(emu, kubelet)
        emu.faults.drop_watches(FEEDBACKLOOPS, abrupt=True)
        emu.faults.drop_watches(EVALUATIONS)
        run_children(emu, kubelet, step_result("evaluate", metrics={"rougeL": 0.6}, passed=True))
        status = wait_loop(emu, lambda s: s.get("championCycle") == 1)
    assert rule.hits >= 1
    assert status["champion"] == CHALLENGER_URI
    assert [r["reason"] for r in status["history"]] == ["Promoted"]
    assert served_model(emu) == CHALLENGER_URI
    for resource in (DATASETS, FINETUNEJOBS, COMPRESSIONS, EVALUATIONS):
        owned = [
            o["metadata"]["name"]
            for o in emu.objects(resource, NS)
            if o["metadata"].get("labels", {}).get("kubetune.dev/feedback-loop") == LOOP
        ]
        assert owned == [CYCLE], (resource, owned)
    collects = [j for j in jobs_of(emu, "FeedbackLoop", LOOP) if j["metadata"]["name"] == COLLECT]
    assert len(collects) == 1


# --- human approval ---------------------------------------------------------------------------

REPORT = "s3://out/loop-c1-eval/report.html"
REJECT = "kubetune.dev/reject"


def start_manual_world(emu: Emulator, kubelet: Kubelet, timeout: int | None = None) -> None:
    succeeded_finetune(emu, kubelet)
    emu.create(DEPLOYMENTS, server_deployment())
    manifest = loop_manifest()
    manifest["spec"]["promotion"]["approval"] = "manual"
    if timeout is not None:
        manifest["spec"]["promotion"]["approvalTimeoutSeconds"] = timeout
    emu.create(FEEDBACKLOOPS, manifest, admit=True)


def pass_gates_and_wait(emu: Emulator, kubelet: Kubelet) -> dict[str, Any]:
    start_cycle(emu, kubelet)
    passed = step_result("evaluate", metrics={"rougeL": 0.6}, passed=True, reportUri=REPORT)
    run_children(emu, kubelet, passed)
    status = wait_loop(emu, lambda s: s.get("awaitingApproval"))
    [request] = status["awaitingApproval"]
    assert (request["runId"], request["challenger"]) == ("c1", CHALLENGER_URI)
    assert condition(status, "AwaitingApproval")["status"] == "True"
    assert condition(status, "Cycling")["reason"] == "AwaitingApproval"
    assert "kubetune.dev/approve=c1" in wait_event(emu, LOOP, "AwaitingApproval")[2]
    assert served_model(emu) == CHAMPION_URI and status.get("championCycle") is None
    return request


def kubetune_cli(emu: Emulator, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    kubeconfig = emu.write_kubeconfig(tmp_path / "cli-kubeconfig")
    return subprocess.run(
        [sys.executable, "-m", "kubetune.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "KUBECONFIG": str(kubeconfig)},
    )


def test_manual_approval_waits_and_kubetune_approve_promotes(
    emu: Emulator, kubelet: Kubelet, loop_operator: LoopOperator, tmp_path: Path
) -> None:
    with loop_operator():
        start_manual_world(emu, kubelet)
        request = pass_gates_and_wait(emu, kubelet)
        assert request["reportUri"] == REPORT
        early = kubetune_cli(emu, tmp_path, "approve", LOOP, "c2", "-n", NS)
        assert early.returncode == 1 and "not awaiting approval" in early.stderr
        done = kubetune_cli(emu, tmp_path, "approve", LOOP, "c1", "-n", NS)
        assert done.returncode == 0, done.stderr
        assert REPORT in done.stdout
        status = wait_loop(emu, lambda s: s.get("championCycle") == 1)
        assert status["history"][0]["reason"] == "Promoted"
        assert "approved" in status["history"][0]["message"]
        assert status.get("awaitingApproval") is None
        assert condition(status, "AwaitingApproval")["status"] == "False"
    assert served_model(emu) == CHALLENGER_URI


def test_manual_approval_reject_annotation_keeps_the_champion(
    emu: Emulator, kubelet: Kubelet, loop_operator: LoopOperator
) -> None:
    with loop_operator():
        start_manual_world(emu, kubelet)
        pass_gates_and_wait(emu, kubelet)
        emu.patch(FEEDBACKLOOPS, NS, LOOP, {"metadata": {"annotations": {REJECT: "c1"}}})
        status = wait_loop(emu, lambda s: s.get("generation") == 1)
        assert status["history"][0]["reason"] == "Rejected"
        assert f"{REJECT}=c1" in status["history"][0]["message"]
        assert (status["champion"], status.get("championCycle")) == (CHAMPION_URI, None)
        assert wait_event(emu, LOOP, "CycleRejected")
    assert served_model(emu) == CHAMPION_URI
    assert emu.requests("PATCH", DEPLOYMENTS) == []


def test_manual_approval_times_out_into_a_rejection(
    emu: Emulator, kubelet: Kubelet, loop_operator: LoopOperator, clock: Clock
) -> None:
    with loop_operator():
        start_manual_world(emu, kubelet, timeout=3600)
        request = pass_gates_and_wait(emu, kubelet)
        assert request["deadline"]
        clock.advance(3600 + 120)
        emu.patch(FEEDBACKLOOPS, NS, LOOP, {"metadata": {"annotations": {"test/poke": "1"}}})
        status = wait_loop(emu, lambda s: s.get("generation") == 1)
        assert status["history"][0]["reason"] == "Rejected"
        assert "not approved within 3600s" in status["history"][0]["message"]
        assert status["champion"] == CHAMPION_URI
    assert served_model(emu) == CHAMPION_URI
