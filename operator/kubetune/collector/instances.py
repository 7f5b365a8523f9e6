"""A collector's instance folder: one temporary folder per ``--workers N`` collector.

It holds what lives only as long as the collector: the committer's Unix socket and the
workers' metrics files (``prometheus_client``'s multiprocess mode), and a ``lock`` file. The
collector removes it when it stops. One that is killed (SIGKILL, OOM) cannot: its processes
keep the ``lock`` file locked (``flock``) while any of them lives and the kernel releases the
lock when the last ends, so a folder whose lock nobody holds is stale, and a collector removes
those as it starts or stops. (Measured: ~56 KB left per killed collector, which would fill the
chart's 64 MiB ``/tmp`` after ~1,200 kills of one pod.)
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile

__all__ = ["INSTANCE_PREFIX", "LOCK_NAME", "claim_instance", "remove_stale_instances"]

INSTANCE_PREFIX = "kubetune-collector-"
LOCK_NAME = "lock"


def claim_instance(parent: str) -> tuple[str, int]:
    """A new instance folder under ``parent`` (0700) and the descriptor of its ``lock``, locked.

    The lock file is locked before it takes its name, so a collector never finds the lock of
    a live one free. The forked workers and committer inherit the descriptor: the lock is held
    while any process of this collector lives, and released by the kernel when the last ends,
    however it ends.
    """
    path = tempfile.mkdtemp(prefix=INSTANCE_PREFIX, dir=parent)
    draft = os.path.join(path, LOCK_NAME + ".new")
    lock = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)
    os.rename(draft, os.path.join(path, LOCK_NAME))
    return path, lock


def remove_stale_instances(parent: str) -> list[str]:
    """Remove the instance folders under ``parent`` that are this user's and whose lock no
    process holds (their collector was killed); the paths removed.

    A folder without a lock file is left alone: one being made, or not a collector's.
    """
    removed = []
    with os.scandir(parent) as entries:
        candidates = [
            entry.path
            for entry in entries
            if entry.name.startswith(INSTANCE_PREFIX)
            and entry.is_dir(follow_symlinks=False)
            and entry.stat(follow_symlinks=False).st_uid == os.getuid()
        ]
    for path in candidates:
        try:
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
            lock = os.open(os.path.join(path, LOCK_NAME), flags)
        except OSError:  # no lock file (or gone meanwhile)
            continue
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live collector's
                continue
            shutil.rmtree(path, ignore_errors=True)  # under its lock: no other remover
            removed.append(path)
        finally:
            os.close(lock)
    return removed
