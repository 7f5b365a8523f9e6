"""Process identity and ownership for local runs: one writer per workdir and per output.

A pid alone is not an identity (pids are reused), so a process is recorded as pid + start time
(``/proc/<pid>/stat``, clock ticks since boot) + host. :class:`WorkdirLock` is an ``flock`` on
``<workdir>/run.lock`` holding that identity: the kernel releases it when its holder dies, so a
SIGKILLed run leaves no stale lock, and a second ``kubetune run`` on a live workdir is refused
with the holder's identity. :func:`end_orphan` ends a step process left running by an earlier
run (its runner was killed before it could stop it) before the step runs again.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

LOCK_FILE = "run.lock"
PR_SET_PDEATHSIG = 1


def process_start(pid: int) -> str | None:
    """The process's start time (clock ticks since boot), or None when unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def alive(pid: int, start: str | None, host: str | None) -> bool:
    """True when the process that was recorded (same pid, start time, host) still runs."""
    if host and host != socket.gethostname():
        return False  # another machine's process: not ours to judge or signal
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = process_start(pid)
    if start is not None and now is not None and now != start:
        return False  # the pid was reused by another process
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[-1].split()
    return bool(fields) and fields[0] == "Z"


# Run as ``python -c GUARD PARENT_PID CMD...``: sets the parent-death signal, then execs CMD
# (the setting survives exec). Done in the child itself rather than in a ``preexec_fn``,
# which is unsafe while other threads (the live table's) run.
_GUARD = (
    "import ctypes, os, sys\n"
    "try:\n"
    f"    ctypes.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, {int(signal.SIGTERM)}, "
    "0, 0, 0)\n"
    "except (OSError, AttributeError):\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(143)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def die_with_parent(command: list[str]) -> list[str]:
    """``command`` wrapped so the process gets SIGTERM when the process starting it dies (even
    by SIGKILL): SIGTERM, not SIGKILL, so a training step still writes its checkpoint. A
    step whose parent is already gone exits at once. Linux only; elsewhere it just runs."""
    return [sys.executable, "-c", _GUARD, str(os.getpid()), *command]


def end_orphan(pid: int, start: str | None, host: str | None, grace: float = 60.0) -> bool:
    """Stop a live step process group left by an earlier run: SIGTERM (it checkpoints), then
    SIGKILL after ``grace`` seconds. True when there was one."""
    if not alive(pid, start, host):
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(pid, start, host):
                return True
            time.sleep(0.2)
    return True


def identity() -> dict[str, Any]:
    pid = os.getpid()
    return {"pid": pid, "start": process_start(pid), "host": socket.gethostname()}


class WorkdirBusy(Exception):
    """Another live ``kubetune run`` holds the workdir."""


@dataclass
class WorkdirLock:
    """An exclusive ``flock`` on ``<workdir>/run.lock`` naming its holder."""

    workdir: Path
    _handle: IO[str] | None = None

    @property
    def path(self) -> Path:
        return self.workdir / LOCK_FILE

    def acquire(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            try:
                who = json.loads(holder)
                text = f"pid {who['pid']} on {who['host']} since {who.get('since', '?')}"
            except (ValueError, KeyError, TypeError):
                text = "another process"
            raise WorkdirBusy(
                f"{self.workdir} is in use by another `kubetune run` ({text}); wait for it "
                "or stop it, then rerun"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            json.dumps({**identity(), "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        )
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.truncate(0)
            self._handle.close()
            self._handle = None
