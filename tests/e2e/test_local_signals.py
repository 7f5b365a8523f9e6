"""One writer per output: `kubetune run` killed by SIGKILL or stopped by SIGTERM never leaves a
trainer running; a second run on a live workdir is refused; the rerun resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_local_run import REPO, _tiny_pipeline, kubetune, state, status_of

from tests.helpers.processes import wait_ended


def _launch(manifests: Path, workdir: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "kubetune.cli", "run", "-f", str(manifests), "--workdir",
         str(workdir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip


def _trainer(
    workdir: Path, proc: subprocess.Popen[str], at_step: int, not_pid: int | None = None
) -> dict[str, Any]:
    """The running training execution once its progress reached ``at_step``."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        if (workdir / "state.json").is_file():
            for name, execution in state(workdir)["executions"].items():
                if not name.startswith("tune-") or execution["state"] != "Running":
                    continue
                if execution["pid"] == not_pid:
                    continue  # what the killed run recorded
                try:
                    progress = json.loads((workdir / "runs" / name / "progress.json").read_text())
                except (OSError, ValueError):
                    continue
                if (progress.get("step") or 0) >= at_step:
                    return dict(execution)
        time.sleep(0.1)
    pytest.fail("training did not start")


def _checkpoints(workdir: Path) -> list[Path]:
    return [p for p in (workdir / "artifacts").rglob("checkpoint-*") if p.is_dir()]


def test_sigkill_and_sigterm_of_kubetune_run_leave_no_trainer_and_resume(tmp_path: Path) -> None:
    manifests = _tiny_pipeline(tmp_path, steps=150, every=10_000)  # no periodic checkpoint
    workdir = tmp_path / "work"

    first = _launch(manifests, workdir)
    try:
        trainer = _trainer(workdir, first, at_step=5)
        # A second run on the same workdir is refused while the first is alive.
        second = kubetune("run", "-f", str(manifests), "--workdir", str(workdir), timeout=120)
        assert second.returncode == 1
        assert "in use by another `kubetune run`" in second.stderr
        assert f"pid {first.pid}" in second.stderr
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    # The trainer dies with its runner (parent-death signal), writing its checkpoint first.
    assert wait_ended([trainer["pid"]], within=60), "the trainer outlived a SIGKILLed kubetune run"
    assert _checkpoints(workdir), "no checkpoint written on the way out"

    rerun = _launch(manifests, workdir)
    try:
        trainer = _trainer(workdir, rerun, at_step=1, not_pid=trainer["pid"])
        time.sleep(1.0)
        rerun.send_signal(signal.SIGTERM)  # what `timeout` and CI runners send
        out, _ = rerun.communicate(timeout=120)
    finally:
        if rerun.poll() is None:
            rerun.kill()
    assert rerun.returncode == 143, out
    assert "rerun the same command to resume" in out
    assert wait_ended([trainer["pid"]], within=5)
    executions = state(workdir)["executions"]
    assert executions[trainer["job"]]["state"] == "Interrupted"
    status = kubetune("status", "--workdir", str(workdir))
    assert status.returncode == 0
    tune_row = next(line for line in status.stdout.splitlines() if line.strip().startswith("tune"))
    assert "Interrupted" in tune_row and "Running" not in tune_row

    final = kubetune("run", "-f", str(manifests), "--workdir", str(workdir))
    assert final.returncode == 0, final.stdout + final.stderr
    tune = status_of(workdir, "FinetuneJob/tune")
    output = Path(tune["outputUri"].removeprefix("file://"))
    results = json.loads((output / "results.json").read_text())
    assert results["steps"] == 150 and results["resumed_from_step"] > 1
    steps = [json.loads(line)["step"] for line in (output / "metrics.jsonl").open()]
    assert steps == sorted(steps)  # one writer: one curve, no interleaved lines
