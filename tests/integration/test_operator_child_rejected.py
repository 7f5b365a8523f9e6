"""A child the API server refuses (422 Invalid) ends the run Failed with reason ChildRejected,
the server's message and one Warning event, and is not retried until the spec changes; 5xx,
429 and 409 on the same create stay retried (tests/integration/test_operator_resilience.py)."""

from __future__ import annotations

import time

from tests.emulator import Emulator, Kubelet
from tests.integration.conftest import (
    FINETUNEJOBS,
    JOBS,
    NS,
    OperatorFactory,
    condition,
    events_for,
    finetune,
    ready_dataset,
    wait_job,
    wait_phase,
)

JOB = "assistant-finetune-g1"
MESSAGE = (
    'Job.batch "assistant-finetune-g1" is invalid: spec.template.spec.priorityClassName: '
    'Invalid value: "nope": no PriorityClass with name nope was found'
)


def test_a_rejected_job_fails_the_run_once_without_a_retry_loop(
    emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    with operator():
        ready_dataset(emu, kubelet)
        fault = emu.faults.invalid("create", JOBS, count=10_000, message=MESSAGE)
        emu.create(FINETUNEJOBS, finetune(), admit=True)
        status = wait_phase(emu, FINETUNEJOBS, "assistant", "Failed", "ChildRejected")["status"]
        succeeded = condition(status, "Succeeded")
        assert succeeded["status"] == "False"
        assert "no PriorityClass with name nope" in succeeded["message"]
        assert "Job" in succeeded["message"] and JOB in succeeded["message"]
        hits = fault.hits
        time.sleep(2.0)  # well beyond the loop's first backoffs
        assert fault.hits == hits, "the refused create was retried"
        rejected = [e for e in events_for(emu, "assistant") if e[1] == "ChildRejected"]
        assert len(rejected) == 1 and rejected[0][0] == "Warning"
        assert not any(e[1].startswith("Apply") for e in events_for(emu, "assistant"))
        assert JOB not in [j["metadata"]["name"] for j in emu.objects(JOBS, NS)]

        # A new generation (the spec fixed) starts a new run, which the API server accepts.
        fault.count = 0
        emu.faults.clear()
        emu.patch(FINETUNEJOBS, NS, "assistant", {"spec": {"retry": {"backoffLimit": 1}}})
        wait_job(emu, "assistant-finetune-g2")
        wait_phase(emu, FINETUNEJOBS, "assistant", "Pending")
