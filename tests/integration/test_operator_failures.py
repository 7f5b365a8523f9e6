"""Failure paths: each way a run can fail or get stuck ends in a status with a precise reason and
an actionable message, and a Warning event."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.emulator import Emulator, Kubelet
from tests.integration.conftest import (
    FINETUNEJOBS,
    NS,
    OperatorFactory,
    condition,
    finetune,
    ready_dataset,
    step_result,
    wait_event,
    wait_job,
    wait_phase,
)

JOB = "assistant-finetune-g1"


def _nan_loss(kubelet: Kubelet) -> None:
    result = step_result("finetune", ok=False, reason="NaNLoss", message="loss became NaN at 12")
    kubelet.fail(NS, JOB, "Error", message=json.dumps(result))


CASES: dict[str, tuple[Any, str, str, str]] = {
    # name: (make it fail, phase, reason, text in the message)
    "oom": (lambda k: k.fail(NS, JOB, "OOMKilled"), "Failed", "OOMKilled", "memory limit"),
    "image-pull": (
        lambda k: k.fail(NS, JOB, "ImagePullBackOff"),
        "Pending",
        "ImagePullBackOff",
        "registry.example/kubetune-cuda:test",
    ),
    "unschedulable": (
        lambda k: k.fail(NS, JOB, "Unschedulable"),
        "Pending",
        "Unschedulable",
        "Insufficient nvidia.com/gpu",
    ),
    "deadline": (
        lambda k: k.fail(NS, JOB, "DeadlineExceeded"),
        "Failed",
        "DeadlineExceeded",
        "deadline",
    ),
    "backoff-limit": (
        lambda k: k.fail(NS, JOB, "Error"),
        "Failed",
        "BackoffLimitExceeded",
        "backoff limit",
    ),
    "step-reason": (_nan_loss, "Failed", "NaNLoss", "loss became NaN"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_failure_reason_reaches_status_and_events(
    case: str, emu: Emulator, kubelet: Kubelet, operator: OperatorFactory
) -> None:
    make_it_fail, phase, reason, text = CASES[case]
    with operator():
        ready_dataset(emu, kubelet)
        emu.create(FINETUNEJOBS, finetune(), admit=True)
        wait_job(emu, JOB)
        make_it_fail(kubelet)
        status = wait_phase(emu, FINETUNEJOBS, "assistant", phase, reason)["status"]
        succeeded = condition(status, "Succeeded")
        assert succeeded["status"] == ("False" if phase == "Failed" else "Unknown")
        assert text in succeeded["message"]
        assert wait_event(emu, "assistant", reason)[0] == "Warning"
