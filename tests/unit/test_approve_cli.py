"""`kubetune approve --workdir`: the decision recorded in a local run's state, the namespace
honoured, a clear line for what is not there; the approval timeout refused with `auto`; the
run summary's approve command naming the run's real workdir.

The local run is the store `kubetune run` saves (a FeedbackLoop of examples/feedback-local whose
cycle c1 waits for approval); the whole run with a real cycle is tests/e2e/test_feedback_local.py.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetune.cli import app
from kubetune.local.store import LocalStore, resource_key
from kubetune.local.view import summary_lines
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
LOOP_FILE = REPO / "examples" / "feedback-local" / "feedback-loop.yaml"
BAD_TIMEOUT = REPO / "tests" / "fixtures" / "bad" / "approval-timeout-with-auto.yaml"
LOOP = "support-assistant-loop"
REQUEST = {"runId": "c1", "reportUri": "file:///w/report.html", "feedbackUri": "file:///w/f.jsonl"}


def waiting_run(workdir: Path) -> None:
    """A local run in ``workdir`` whose loop waits for approval of cycle c1."""
    store = LocalStore(workdir)
    store.create_resource(yaml.safe_load(LOOP_FILE.read_text()), str(LOOP_FILE))
    body = store.state.resources[resource_key("FeedbackLoop", LOOP)].body
    body["status"] = {"phase": "Running", "activeRuns": ["c1"], "awaitingApproval": [REQUEST]}
    store.save()


def loop_annotations(workdir: Path) -> dict[str, Any]:
    body = LocalStore(workdir).state.resources[resource_key("FeedbackLoop", LOOP)].body
    return dict(body["metadata"].get("annotations") or {})


def kubetune(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubetune.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr and len(lines) == 1, done.stderr
    return lines[0]


def test_approve_then_reject_in_a_local_run(tmp_path: Path) -> None:
    workdir = tmp_path / "my run"
    waiting_run(workdir)
    done = CliRunner().invoke(app, ["approve", LOOP, "c1", "--workdir", str(workdir)])
    assert done.exit_code == 0, done.output
    assert REQUEST["reportUri"] in done.output
    rerun = f"kubetune run -f MANIFESTS --workdir {shlex.quote(str(workdir))}"
    assert f"{LOOP} c1 approved: run `{rerun}` again" in done.output
    assert loop_annotations(workdir)["kubetune.dev/approve"] == "c1"
    args = ["approve", LOOP, "c1", "--reject", "-n", "default", "--workdir", str(workdir)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert loop_annotations(workdir) == {"kubetune.dev/reject": "c1"}


@pytest.mark.parametrize("reject", [(), ("--reject",)], ids=["approve", "reject"])
def test_another_namespace_or_loop_is_refused_in_one_line(
    tmp_path: Path, reject: tuple[str, ...]
) -> None:
    waiting_run(tmp_path)
    done = kubetune("approve", LOOP, "c1", "-n", "other", "--workdir", str(tmp_path), *reject)
    assert done.returncode == 1
    line = one_line(done)
    assert f"no FeedbackLoop {LOOP} in namespace other of the local run in {tmp_path}" in line
    assert f"its namespace is default; its FeedbackLoops: {LOOP}" in line
    done = kubetune("approve", "nope", "c1", "--workdir", str(tmp_path), *reject)
    assert done.returncode == 1
    assert f"no FeedbackLoop nope in namespace default of the local run in {tmp_path}" in (
        one_line(done)
    )
    assert loop_annotations(tmp_path) == {}


def test_a_cycle_not_waiting_and_cluster_flags_are_refused(tmp_path: Path) -> None:
    waiting_run(tmp_path)
    done = kubetune("approve", LOOP, "c2", "--workdir", str(tmp_path))
    assert done.returncode == 1
    assert "cycle c2 is not awaiting approval (waiting: c1)" in one_line(done)
    done = kubetune("approve", LOOP, "c1", "--workdir", str(tmp_path), "--context", "prod")
    assert done.returncode == 2
    assert "--workdir approves in a local run: drop --kubeconfig/--context" in one_line(done)
    done = kubetune("approve", LOOP, "c1", "--workdir", str(tmp_path / "none"))
    assert done.returncode == 1 and f"no local run in {tmp_path / 'none'}" in done.stderr
    assert loop_annotations(tmp_path) == {}


def test_an_approval_timeout_needs_manual_approval() -> None:
    done = CliRunner().invoke(app, ["validate", "-f", str(BAD_TIMEOUT)])
    assert done.exit_code == 1
    assert (
        'spec.promotion.approvalTimeoutSeconds: Invalid value: "object": '
        "approvalTimeoutSeconds needs approval: manual"
    ) in done.output


def test_the_run_summary_prints_the_approve_command_for_its_workdir(tmp_path: Path) -> None:
    workdir = tmp_path / "my run"
    waiting_run(workdir)
    bodies = [r.body for r in LocalStore(workdir).state.resources.values()]
    lines = summary_lines(bodies, workdir=workdir)
    command = f"kubetune approve {LOOP} c1 --workdir {shlex.quote(str(workdir))}"
    assert f"    c1 awaits approval: `{command}` (or --reject), then run again" in lines
    assert not any("WORKDIR" in line for line in lines)
    # the printed command works as printed
    done = subprocess.run(
        [sys.executable, "-m", "kubetune.cli", *shlex.split(command)[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert loop_annotations(workdir)["kubetune.dev/approve"] == "c1"
