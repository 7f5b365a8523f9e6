"""One writer per output: the training step holds an exclusive lock on its output location.

``<output>.lock`` (a sibling of the output directory, so the atomic rename of the artifact
does not touch it) is ``flock``ed for the whole run and names its holder: pid, process start
time and host. The kernel releases it when the holder dies, so a killed pod leaves no stale
lock; a second trainer on the same output (an orphan still running, a duplicate pod on a
shared volume) fails at once with ``OutputLocked`` naming the holder, before it reads or
writes a checkpoint. Retryable: once the holder is gone, the next try proceeds.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from kubetune_workloads.errors import WorkloadError


def _start_time(pid: int) -> str | None:
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[19]
    return None


@contextlib.contextmanager
def hold(output: Path | None) -> Iterator[None]:
    """Hold the output's lock for the block (nothing for outputs that are not local paths)."""
    if output is None:
        yield
        return
    output.parent.mkdir(parents=True, exist_ok=True)
    path = output.parent / f".{output.name}.lock"
    handle = path.open("a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise WorkloadError(
                "OutputLocked",
                f"another trainer is writing {output} ({holder}); not starting a second "
                "writer: stop it or wait for it to end",
            ) from None
        handle.seek(0)
        handle.truncate()
        me = os.getpid()
        handle.write(
            json.dumps(
                {
                    "pid": me,
                    "start": _start_time(me),
                    "host": socket.gethostname(),
                    "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                }
            )
        )
        handle.flush()
        yield
    finally:
        handle.close()
