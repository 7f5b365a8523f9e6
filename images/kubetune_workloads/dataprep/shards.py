"""Where a staged run's map shards live: a folder every pod sees, or an ``s3://`` prefix.

The operator puts them beside the run's output (``pvc://c/ds/.g1.shards-g1``). A local folder
(a path, ``file://`` or a mounted ``pvc://``) is used in place: datatrove's completion markers
(``logs/completions/RANK``) and the atomically renamed ``result-RANK.pkl`` mark a task done.
An ``s3://`` prefix is mirrored in the local cache: a map task first fetches what is already
done, runs, then uploads its shard and result, the completion marker last (an object store has
no rename: the marker, written last, is what marks the task complete); the reduce fetches every
completed task's files.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kubetune_workloads import storage
from kubetune_workloads.errors import WorkloadError, invalid_input


def task_files(rank: int) -> list[str]:
    """A task's files relative to the shard folder, its completion marker last."""
    return [f"shard-{rank:05d}.pkl", f"result-{rank:05d}.pkl", f"logs/completions/{rank:05d}"]


class ShardFolder:
    """The shards of one run: ``local`` is the folder the engine reads and writes."""

    def __init__(self, location: str) -> None:
        self.location = location
        self.remote: str | None = None
        if "://" not in location:
            self.local = Path(location)
            return
        path = storage.local_path(location)
        if path is not None:
            self.local = path
            return
        scheme, rest = storage.split_uri(location)
        if scheme != "s3":
            raise invalid_input(f"map shards go to a folder, file://, pvc:// or s3://: {location}")
        self.remote = rest.rstrip("/")
        self.local = storage.cache_root() / "shards" / self.remote

    def _fs(self) -> Any:
        return storage.s3_filesystem()

    def fetch_done(self, ranks: Iterable[int]) -> set[int]:
        """Fetch the files of the tasks already complete in the store; returns their ranks."""
        if self.remote is None:
            return set()
        fs, done = self._fs(), set()
        try:
            for rank in ranks:
                files = task_files(rank)
                if not fs.exists(f"{self.remote}/{files[-1]}"):
                    continue
                for name in files:
                    target = self.local / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    fs.get(f"{self.remote}/{name}", str(target))
                done.add(rank)
        except Exception as exc:
            raise WorkloadError("StorageError", f"cannot read {self.location}: {exc}") from exc
        return done

    def publish(self, rank: int) -> None:
        """Upload a completed task's files, the completion marker last (s3 only)."""
        if self.remote is None:
            return
        fs = self._fs()
        try:
            for name in task_files(rank):
                fs.put_file(str(self.local / name), f"{self.remote}/{name}")
        except Exception as exc:
            raise WorkloadError("StorageError", f"cannot write {self.location}: {exc}") from exc

    def remove(self) -> None:
        """Delete the shards (once the artifact is written)."""
        shutil.rmtree(self.local, ignore_errors=True)
        if self.remote is not None:
            fs = self._fs()
            try:
                if fs.exists(self.remote):
                    fs.rm(self.remote, recursive=True)
            except Exception:  # leftovers under a hidden run-scoped prefix; not a failure
                return
