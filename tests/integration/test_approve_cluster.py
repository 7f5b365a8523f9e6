"""`kubetune approve` against a cluster (the API emulator), as a user runs it: the annotations it
sets, and one clear line with a non-zero exit code for every way it cannot (no such loop or
namespace, a cycle not waiting, no kubeconfig, an unknown context, a dead server, no CRDs).

The loop waits for approval because its status says so (the operator's part is covered by
test_operator_feedback.py); here only the command is under test. Local runs:
tests/unit/test_approve_cli.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import Emulator, start_emulator
from tests.integration.conftest import FEEDBACKLOOPS, NS
from tests.integration.test_operator_feedback import loop_manifest
from tests.integration.test_operator_login import KUBETUNE, clean_env, kubeconfig, one_line

LOOP = "loop"  # loop_manifest's name
APPROVE, REJECT = "kubetune.dev/approve", "kubetune.dev/reject"
REQUEST = {
    "runId": "c1",
    "challenger": "s3://out/loop-c1",
    "evaluation": "loop-c1",
    "reportUri": "s3://out/loop-c1/eval/report.html",
    "feedbackUri": "s3://out/loop-c1/feedback/feedback.jsonl",
    "since": "2026-12-03T04:00:00Z",
}


def approve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [KUBETUNE, "approve", LOOP, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture()
def waiting(emu: Emulator, tmp_path: Path) -> dict[str, str]:
    """A loop whose cycle c1 awaits approval; the environment of a user whose kubeconfig
    points at the emulator (context ``emulator``, namespace default)."""
    emu.create(FEEDBACKLOOPS, loop_manifest(), admit=True)
    emu.patch_status(FEEDBACKLOOPS, NS, LOOP, {"awaitingApproval": [REQUEST]})
    config = emu.write_kubeconfig(tmp_path / "kubeconfig")
    return clean_env(tmp_path, KUBECONFIG=str(config))


def annotations(emu: Emulator) -> dict[str, Any]:
    found = emu.get(FEEDBACKLOOPS, NS, LOOP)
    assert found is not None
    return dict(found["metadata"].get("annotations") or {})


def test_approve_then_reject_the_same_cycle(emu: Emulator, waiting: dict[str, str]) -> None:
    done = approve(waiting, "c1")  # the namespace is the kubeconfig context's
    assert done.returncode == 0, done.stderr
    assert REQUEST["reportUri"] in done.stdout and REQUEST["feedbackUri"] in done.stdout
    assert "feedbackloop.kubetune.dev/loop c1 approved" in done.stdout
    assert annotations(emu)[APPROVE] == "c1"
    done = approve(waiting, "c1", "--reject", "-n", NS)
    assert done.returncode == 0, done.stderr
    assert "c1 rejected" in done.stdout
    found = annotations(emu)
    assert found[REJECT] == "c1" and APPROVE not in found  # a reject of c1 drops its approve


@pytest.mark.parametrize("reject", [(), ("--reject",)], ids=["approve", "reject"])
def test_a_missing_loop_or_namespace_is_one_line_naming_both(
    emu: Emulator, waiting: dict[str, str], reject: tuple[str, ...]
) -> None:
    done = approve(waiting, "c1", "-n", "nope", *reject)
    assert done.returncode == 1
    line = one_line(done)
    assert "FeedbackLoop loop not found in namespace nope" in line
    assert "(its FeedbackLoops: none)" in line
    other = subprocess.run(
        [KUBETUNE, "approve", "other-loop", "c1", *reject],
        env=waiting,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert other.returncode == 1
    assert "FeedbackLoop other-loop not found in namespace default" in one_line(other)
    assert "(its FeedbackLoops: loop)" in one_line(other)
    assert APPROVE not in annotations(emu) and REJECT not in annotations(emu)


def test_a_cycle_that_is_not_waiting_is_refused_unless_forced(
    emu: Emulator, waiting: dict[str, str]
) -> None:
    done = approve(waiting, "c2")
    assert done.returncode == 1
    assert "default/loop: cycle c2 is not awaiting approval (waiting: c1)" in one_line(done)
    assert APPROVE not in annotations(emu)
    forced = approve(waiting, "c2", "--force")
    assert forced.returncode == 0, forced.stderr
    assert annotations(emu)[APPROVE] == "c2"


def test_an_unknown_context_names_the_contexts(waiting: dict[str, str]) -> None:
    done = approve(waiting, "c1", "--context", "nope")
    assert done.returncode == 2
    line = one_line(done)
    assert "kubeconfig context 'nope' does not exist (contexts: emulator)" in line
    assert "--context NAME" in line


def test_no_kubeconfig_says_how_to_point_at_a_cluster(tmp_path: Path) -> None:
    done = approve(clean_env(tmp_path), "c1", "--reject")
    assert done.returncode == 2
    line = one_line(done)
    assert "no Kubernetes credentials" in line and "kubeconfig ~/.kube/config: no such file" in line
    assert "set KUBECONFIG, or pass --kubeconfig" in line and "--workdir DIR" in line
    missing = tmp_path / "missing"
    done = approve(clean_env(tmp_path), "c1", "--kubeconfig", str(missing))
    assert done.returncode == 2
    assert f"kubeconfig {missing}: no such file" in one_line(done)


def test_a_dead_server_is_one_line(tmp_path: Path) -> None:
    config = kubeconfig(tmp_path / "config", "http://127.0.0.1:9")
    done = approve(clean_env(tmp_path, KUBECONFIG=str(config)), "c1")
    assert done.returncode == 2
    line = one_line(done)
    assert "cannot reach the Kubernetes API server at http://127.0.0.1:9" in line


def test_a_cluster_without_kubetune_says_so(tmp_path: Path) -> None:
    with start_emulator() as bare:
        config = bare.write_kubeconfig(tmp_path / "kubeconfig")
        done = approve(clean_env(tmp_path, KUBECONFIG=str(config)), "c1")
    assert done.returncode == 2
    assert "does not serve FeedbackLoops: install kubetune's CRDs" in one_line(done)
