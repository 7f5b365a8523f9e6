"""The real operator against the API emulator: each kind's lifecycle, dependency waiting, suspend,
spec changes, re-applies, deletion, invalid specs and live progress."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import kubernetes_validate
import pytest
import yaml
from kubetune.api.steps import parse_step_spec
from kubetune.controllers import metrics

from tests.emulator import Emulator, Kubelet
from tests.integration.conftest import (
    COMPRESSIONS,
    CONFIG,
    DATASETS,
    EVALUATIONS,
    FEEDBACKLOOPS,
    FINETUNEJOBS,
    JOBS,
    NS,
    ROOT,
    OperatorFactory,
    compression,
    condition,
    dataset,
    evaluation,
    finetune,
    jobs_of,
    ready_dataset,
    status_of,
    step_result,
    succeeded_finetune,
    wait_event,
    wait_job,
    wait_phase,
)


def _strip_server_fields(obj: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: v
        for k, v in obj["metadata"].items()
        if k not in ("uid", "resourceVersion", "creationTimestamp", "generation")
    }
    return {**{k: v for k, v in obj.items() if k != "status"}, "metadata": meta}


def test_dataset_runs_one_dataprep_job_and_becomes_ready(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        emu.create(DATASETS, dataset(), admit=True)
        job = wait_job(emu, "tickets-dataprep-g1")
        pending = wait_phase(emu, DATASETS, "tickets", "Pending", "Starting")
        owner = job["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["name"], owner["uid"]) == (
            "Dataset",
            "tickets",
            pending["metadata"]["uid"],
        )
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == CONFIG.cpu_image
        spec_map = emu.get("configmaps", NS, "tickets-dataprep-g1-spec")
        assert spec_map is not None
        step = parse_step_spec(spec_map["data"]["spec.json"])
        assert step.step == "dataprep"
        assert step.output_uri == "s3://kubetune-test/default/dataset/tickets/g1"
        for obj in (job, spec_map):
            kubernetes_validate.validate(_strip_server_fields(obj), "1.30", strict=True)

        kubelet.start(NS, "tickets-dataprep-g1")
        wait_phase(emu, DATASETS, "tickets", "Running")
        kubelet.succeed(
            NS,
            "tickets-dataprep-g1",
            step_result("dataprep", outputUri="s3://out/tickets", details={"records": 42}),
        )
        ready = wait_phase(emu, DATASETS, "tickets", "Ready", "Completed")
        assert ready["status"]["outputUri"] == "s3://out/tickets"
        assert ready["status"]["records"] == 42
        assert condition(ready["status"], "Ready")["status"] == "True"
        assert condition(ready["status"], "Ready")["observedGeneration"] == 1
        for reason in ("Starting", "Running", "Completed"):
            wait_event(emu, "tickets", reason)
    assert len(jobs_of(emu, "Dataset", "tickets")) == 1


def test_finetune_waits_for_its_dataset_then_runs_when_it_becomes_ready(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        emu.create(FINETUNEJOBS, finetune(), admit=True)
        waiting = wait_phase(emu, FINETUNEJOBS, "assistant", "Waiting", "DatasetNotFound")
        assert condition(waiting["status"], "Waiting")["status"] == "True"
        emu.create(DATASETS, dataset(), admit=True)
        wait_phase(emu, FINETUNEJOBS, "assistant", "Waiting", "DatasetNotReady")
        assert jobs_of(emu, "FinetuneJob", "assistant") == []

        # The Dataset becoming Ready wakes the FinetuneJob (the fallback re-check is 60s away).
        wait_job(emu, "tickets-dataprep-g1")
        kubelet.succeed(
            NS, "tickets-dataprep-g1", step_result("dataprep", outputUri="s3://out/tickets")
        )
        job = wait_job(emu, "assistant-finetune-g1")
        container = job["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == CONFIG.cuda_image
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        spec_map = emu.get("configmaps", NS, "assistant-finetune-g1-spec")
        assert spec_map is not None
        step = parse_step_spec(spec_map["data"]["spec.json"])
        assert step.step == "finetune"
        assert step.dataset.uri == "s3://out/tickets"  # type: ignore[union-attr]

        kubelet.succeed(
            NS,
            "assistant-finetune-g1",
            step_result("finetune", outputUri="s3://out/assistant", metrics={"loss": 0.25}),
        )
        done = wait_phase(emu, FINETUNEJOBS, "assistant", "Succeeded", "Completed")
        assert done["status"]["results"] == {"loss": 0.25}
        assert done["status"]["outputUri"] == "s3://out/assistant"
        assert condition(done["status"], "Waiting")["status"] == "False"
    assert metrics.TRAINING_LOSS.labels(NS, "assistant")._value.get() == 0.25


def test_compression_and_evaluation_follow_their_model(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        emu.create(COMPRESSIONS, compression(), admit=True)
        emu.create(EVALUATIONS, evaluation(), admit=True)
        wait_phase(emu, COMPRESSIONS, "assistant-nf4", "Waiting", "ModelNotFound")
        wait_phase(emu, EVALUATIONS, "assistant-eval", "Waiting", "ModelNotFound")
        succeeded_finetune(emu, kubelet)

        wait_job(emu, "assistant-nf4-compress-g1")
        kubelet.succeed(
            NS,
            "assistant-nf4-compress-g1",
            step_result("compress", outputUri="s3://out/nf4", metrics={"sizeRatio": 0.3}),
        )
        compressed = wait_phase(emu, COMPRESSIONS, "assistant-nf4", "Succeeded")
        assert compressed["status"]["outputUri"] == "s3://out/nf4"

        wait_job(emu, "assistant-eval-evaluate-g1")
        spec_map = emu.get("configmaps", NS, "assistant-eval-evaluate-g1-spec")
        assert spec_map is not None
        assert (
            parse_step_spec(spec_map["data"]["spec.json"]).candidate.uri
            == "s3://kubetune-test/assistant"
        )  # type: ignore[union-attr]
        kubelet.succeed(
            NS,
            "assistant-eval-evaluate-g1",
            step_result("evaluate", metrics={"rougeL": 0.1}, passed=False, failedGates=["rougeL"]),
        )
        evaluated = wait_phase(emu, EVALUATIONS, "assistant-eval", "Succeeded")
        assert evaluated["status"]["passed"] is False
        assert condition(evaluated["status"], "Passed")["status"] == "False"
        assert wait_event(emu, "assistant-eval", "GatesFailed")[0] == "Warning"
    assert metrics.EVALUATION_SCORE.labels(NS, "assistant-eval", "rougeL")._value.get() == 0.1


def test_feedback_loop_without_its_champion_waits_and_creates_nothing(
    emu: Emulator, operator: OperatorFactory
) -> None:
    loop = yaml.safe_load((ROOT / "examples" / "feedback-loop.yaml").read_text())
    loop["metadata"]["namespace"] = NS
    name = loop["metadata"]["name"]
    with operator():
        emu.create(FEEDBACKLOOPS, loop, admit=True)
        status = wait_phase(emu, FEEDBACKLOOPS, name, "Waiting", "ModelNotFound")["status"]
        assert condition(status, "Ready")["status"] == "False"
        assert "support-assistant" in condition(status, "Ready")["message"]
        assert wait_event(emu, name, "ModelNotFound")[0] == "Normal"
    assert emu.objects(JOBS, NS) == []


def test_suspend_suspends_the_job_and_resume_unsuspends_it(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        ready_dataset(emu, kubelet)
        emu.create(FINETUNEJOBS, finetune(suspend=True), admit=True)
        job = wait_job(emu, "assistant-finetune-g1")
        assert job["spec"]["suspend"] is True
        wait_phase(emu, FINETUNEJOBS, "assistant", "Suspended")
        emu.patch(FINETUNEJOBS, NS, "assistant", {"spec": {"suspend": False}})
        emu.wait_for(JOBS, NS, "assistant-finetune-g1", lambda j: not j["spec"].get("suspend"))
        status = wait_phase(emu, FINETUNEJOBS, "assistant", "Pending")["status"]
        assert status["runId"] == "g1"  # a suspend-only change keeps the run
    assert len(jobs_of(emu, "FinetuneJob", "assistant")) == 1


def test_spec_change_starts_a_new_run_and_keeps_the_old_one_in_history(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        succeeded_finetune(emu, kubelet)
        emu.patch(FINETUNEJOBS, NS, "assistant", {"spec": {"hyperparameters": {"maxSteps": 20}}})
        wait_job(emu, "assistant-finetune-g2")
        status = wait_phase(emu, FINETUNEJOBS, "assistant", "Pending")["status"]
        assert status["runId"] == "g2"
        assert [(r["runId"], r["phase"]) for r in status["history"]] == [("g1", "Succeeded")]
        assert status["history"][0]["results"] == {"loss": 0.5}
        wait_event(emu, "assistant", "NewRun")
    names = sorted(j["metadata"]["name"] for j in jobs_of(emu, "FinetuneJob", "assistant"))
    assert names == ["assistant-finetune-g1", "assistant-finetune-g2"]


def test_reapplying_an_unchanged_manifest_changes_nothing(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        ready = ready_dataset(emu, kubelet)
        before = len(emu.objects(JOBS, NS)), len(emu.objects("configmaps", NS))
        status_writes = len(emu.requests("PATCH", DATASETS))
        emu.patch(DATASETS, NS, "tickets", {"spec": dataset()["spec"]})
        emu.patch(DATASETS, NS, "tickets", {"metadata": {"labels": {"team": "support"}}})
        emu.wait_for(DATASETS, NS, "tickets", lambda o: o["metadata"].get("labels"))
        time.sleep(0.5)  # give a wrong reaction the time to happen
        after = emu.get(DATASETS, NS, "tickets")
        assert after is not None
        assert after["metadata"]["generation"] == 1
        assert after["status"] == ready["status"]
        assert (len(emu.objects(JOBS, NS)), len(emu.objects("configmaps", NS))) == before
        assert len(emu.requests("PATCH", DATASETS)) == status_writes


def test_deleting_a_resource_deletes_its_children(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        ready_dataset(emu, kubelet)
        emu.delete(DATASETS, NS, "tickets")
        emu.wait_for_absence(DATASETS, NS, "tickets", timeout=15)
        emu.wait_for_absence(JOBS, NS, "tickets-dataprep-g1", timeout=15)
        emu.wait_for_absence("configmaps", NS, "tickets-dataprep-g1-spec", timeout=15)


@pytest.mark.parametrize("emu", [False], indirect=True)  # admission would refuse the spec
def test_invalid_spec_is_reported_in_status_with_the_field_path(
    emu: Emulator, operator: OperatorFactory
) -> None:
    bad = finetune()
    bad["spec"]["lora"] = {"alpha": 16}  # no r: rejected by the model (not by admission here)
    with operator():
        emu.create(FINETUNEJOBS, bad)  # as stored under an older, laxer CRD version
        failed = wait_phase(emu, FINETUNEJOBS, "assistant", "Failed", "InvalidSpec")
        message = condition(failed["status"], "Succeeded")["message"]
        assert "spec.lora" in message
        assert wait_event(emu, "assistant", "InvalidSpec")[0] == "Warning"
        emu.patch(FINETUNEJOBS, NS, "assistant", {"spec": {"lora": {"r": 8}}})
        wait_phase(emu, FINETUNEJOBS, "assistant", "Waiting", "DatasetNotFound")
    assert emu.objects(JOBS, NS) == []


class _ProgressHandler(http.server.BaseHTTPRequestHandler):
    payload: ClassVar[dict[str, Any]] = {"step": 7, "totalSteps": 10, "loss": 1.25, "etaSeconds": 3}

    def do_GET(self) -> None:
        body = json.dumps(self.payload).encode()
        self.send_response(200 if self.path.startswith("/progress") else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture()
def progress_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ProgressHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_running_finetune_job_shows_live_progress_and_exports_metrics(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory, progress_server: int
) -> None:
    from dataclasses import replace

    with operator(replace(CONFIG, progress_port=progress_server)):
        ready_dataset(emu, kubelet)
        emu.create(FINETUNEJOBS, finetune(), admit=True)
        wait_job(emu, "assistant-finetune-g1")
        pod = kubelet.start(NS, "assistant-finetune-g1")
        emu.patch_status("pods", NS, pod["metadata"]["name"], {"podIP": "127.0.0.1"})
        running = emu.wait_for(
            FINETUNEJOBS,
            NS,
            "assistant",
            lambda o: ((o.get("status") or {}).get("progress") or {}).get("step") == 7,
            timeout=15,
        )
        assert running["status"]["progress"]["loss"] == 1.25
        assert "step 7/10" in running["status"]["message"]
    exposition = metrics.REGISTRY.get_sample_value(
        "kubetune_training_loss", {"namespace": NS, "name": "assistant"}
    )
    assert exposition == 1.25
    reconciles = metrics.REGISTRY.get_sample_value(
        "kubetune_reconcile_total", {"kind": "FinetuneJob"}
    )
    assert reconciles is not None and reconciles > 0
    assert (
        metrics.REGISTRY.get_sample_value(
            "kubetune_resources", {"kind": "FinetuneJob", "phase": "Running"}
        )
        is not None
    )
    assert status_of(emu, FINETUNEJOBS, "assistant")["phase"] == "Running"
