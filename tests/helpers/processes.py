"""Processes the tests watch end (Linux ``/proc``)."""

from __future__ import annotations

import time
from collections.abc import Iterable


def ended(pid: int) -> bool:
    """Whether ``pid`` has ended: gone, or a zombie not reaped yet (a PID 1 that does not reap
    leaves those in ``/proc``)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[-1].split()[0] == "Z"
    except OSError:
        return True


def wait_ended(pids: Iterable[int], within: float) -> bool:
    """Whether every one of ``pids`` ends within ``within`` seconds."""
    waiting = list(pids)
    deadline = time.monotonic() + within
    while True:
        waiting = [pid for pid in waiting if not ended(pid)]
        if not waiting or time.monotonic() >= deadline:
            return not waiting
        time.sleep(0.05)
