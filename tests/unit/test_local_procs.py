"""A rerun never starts a second writer: a step process left alive by an earlier run (same pid,
start time and host) is ended before its step runs again; a reused pid is left alone."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kubetune.local.procs import WorkdirBusy, WorkdirLock, alive, process_start
from kubetune.local.runner import LocalRunner
from kubetune.local.store import Execution, LocalStore

SLEEPER = (
    "import signal, time\nsignal.signal(signal.SIGTERM, lambda *a: exit(143))\ntime.sleep(300)"
)


def _orphan() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SLEEPER], start_new_session=True)


def _record(workdir: Path, name: str, proc: subprocess.Popen[bytes], start: str | None) -> None:
    store = LocalStore(workdir)
    store.state.executions[name] = Execution(
        job=name, run_id="g1", state="Running", pid=proc.pid, pid_start=start,
        host=socket.gethostname(),
    )  # fmt: skip
    store.save()


def test_a_live_orphan_is_ended_before_its_step_runs_again(tmp_path: Path) -> None:
    orphan = _orphan()
    try:
        time.sleep(0.3)
        _record(tmp_path, "tune-finetune-g1", orphan, process_start(orphan.pid))
        runner = LocalRunner(tmp_path)
        runner.apply([])
        assert orphan.wait(timeout=10) == 143  # SIGTERM first: a trainer checkpoints
        assert any("ended step tune-finetune-g1" in n for n in runner.notes)
        assert "tune-finetune-g1" not in LocalStore(tmp_path).state.executions
    finally:
        orphan.kill()


def test_a_reused_pid_is_not_signalled(tmp_path: Path) -> None:
    other = _orphan()
    try:
        time.sleep(0.3)
        _record(tmp_path, "tune-finetune-g1", other, "1")  # recorded start time differs
        assert not alive(other.pid, "1", socket.gethostname())
        LocalRunner(tmp_path).apply([])
        assert other.poll() is None
    finally:
        other.kill()


def test_the_workdir_lock_names_its_holder(tmp_path: Path) -> None:
    held = WorkdirLock(tmp_path)
    held.acquire()
    try:
        with pytest.raises(WorkdirBusy, match=r"pid \d+ on "):
            WorkdirLock(tmp_path).acquire()
    finally:
        held.release()
    again = WorkdirLock(tmp_path)
    again.acquire()
    again.release()
