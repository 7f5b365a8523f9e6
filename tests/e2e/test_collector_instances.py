"""A ``--workers N`` collector's temporary folder (the committer's socket, the workers'
metrics files, a lock its processes hold) is removed when it stops; when it was killed, by the
next collector that starts or stops with the same temporary folder; never while a process of
the collector that made it lives.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.collector import CollectorProcess, post
from tests.helpers.processes import wait_ended

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the workers are forked")
NOT_OURS = "kubetune-collector-notours"  # no lock file: not a collector's folder, kept


def instances(tmp: Path) -> set[str]:
    return {path.name for path in tmp.glob("kubetune-collector-*")} - {NOT_OURS}


def kill_and_wait(process: CollectorProcess) -> None:
    """SIGKILL the supervisor (no clean-up of its own); wait until its workers have ended."""
    workers = process.workers()
    process.kill()
    assert wait_ended(workers, within=10), "the workers of a killed collector stay"


def collector(tmp_path: Path, name: str, tmp: Path, workers: int = 2) -> CollectorProcess:
    workdir = tmp_path / name
    workdir.mkdir()
    return CollectorProcess(workdir, "--workers", str(workers), env={"TMPDIR": str(tmp)})


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    folder = tmp_path / "tmp"
    folder.mkdir()
    (folder / NOT_OURS).mkdir()
    return folder


def test_a_killed_collectors_folder_is_removed_by_the_next_one_a_live_ones_kept(
    tmp_path: Path, tmp: Path
) -> None:
    first, second, third = (collector(tmp_path, name, tmp) for name in ("a", "b", "c"))
    try:
        first.start()
        assert post(first, ["a"])[0] == 200
        (killed,) = instances(tmp)
        assert {p.name for p in (tmp / killed).iterdir()} == {"lock", "commit.sock", "metrics"}
        assert any((tmp / killed / "metrics").iterdir())  # the workers' metrics files
        kill_and_wait(first)
        assert instances(tmp) == {killed}

        second.start()
        (kept,) = instances(tmp)
        assert kept != killed  # removed as the second started
        assert f"removed {tmp / killed}, left by a collector that was killed" in (
            second.log.read_text()
        )
        third.start()  # beside the second: keeps its folder, starting and stopping
        assert post(third, ["c"])[0] == 200
        assert len(instances(tmp)) == 2
        third.stop()
        assert third.proc is not None and third.proc.returncode == 0
        assert instances(tmp) == {kept}
        assert post(second, ["b"]) == (200, {"accepted": 1, "duplicates": 0})
        second.stop()
        assert instances(tmp) == set()  # its own, as it stopped
        assert (tmp / NOT_OURS).is_dir()
    finally:
        for process in (first, second, third):
            process.stop()


def test_a_collector_killed_after_another_started_is_removed_as_that_one_stops(
    tmp_path: Path, tmp: Path
) -> None:
    first, second = collector(tmp_path, "a", tmp), collector(tmp_path, "b", tmp)
    try:
        first.start()
        second.start()
        kill_and_wait(first)
        assert len(instances(tmp)) == 2
        second.stop()
        assert second.proc is not None and second.proc.returncode == 0
        assert instances(tmp) == set()
    finally:
        first.stop()
        second.stop()


def test_a_one_process_collector_removes_a_killed_collectors_folder_too(
    tmp_path: Path, tmp: Path
) -> None:
    first, second = collector(tmp_path, "a", tmp), collector(tmp_path, "b", tmp, workers=1)
    try:
        first.start()
        kill_and_wait(first)
        assert len(instances(tmp)) == 1
        second.start()  # makes no folder of its own
        assert instances(tmp) == set()
        assert post(second, ["a"]) == (200, {"accepted": 1, "duplicates": 0})
    finally:
        first.stop()
        second.stop()
