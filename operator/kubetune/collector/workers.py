"""Several collector processes on one port: a supervisor, its HTTP workers and its committer.

One Python process spends most of a core on HTTP and JSON at a few thousand requests per
second; ``--workers N`` runs N HTTP workers. The supervisor binds one listening socket per
worker on one port (SO_REUSEPORT: the kernel spreads connections evenly over them), forks the
workers, each accepting on its own, and one committer (:mod:`kubetune.collector.committer`),
the only process that writes the store: the workers send it their requests' valid records over
a Unix socket (in a private temporary folder) and answer once it replies. The supervisor
restarts a worker or the committer that dies; on SIGTERM it stops the workers first (they
finish the requests in flight, which need the committer), then the committer. Replicas of the
collector (pods) are each one such writer of a shared store (:mod:`kubetune.collector.store`).

The workers' metrics are summed through ``prometheus_client``'s multiprocess mode (a folder of
per-process files, ``PROMETHEUS_MULTIPROC_DIR``; a temporary one unless it is set), so any
worker answers ``/metrics`` for all. A worker whose supervisor dies (SIGKILL) exits at once: it
watches a pipe whose write end only the supervisor holds.

The committer's socket and the metrics folder live in the collector's instance folder
(:mod:`kubetune.collector.instances`), removed when it stops; a collector that starts, or one
that stops, removes those a killed collector left.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Coroutine
from types import FrameType
from typing import Any

from kubetune.collector.config import CollectorConfig
from kubetune.collector.instances import claim_instance, remove_stale_instances
from kubetune.collector.store import writer_id

log = logging.getLogger("kubetune.collector")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BIND_WAIT_SECONDS = 10.0  # a killed supervisor's workers may still hold the port that long
RESTARTS_PER_MINUTE = 10
COMMITTER = -1  # the committer's slot among the children
SWITCH_INTERVAL_SECONDS = 0.0005  # see run_loop
# The HTTP workers yield the CPU to the committer, the one stage every request goes through
# (their own work runs in parallel and can wait): when both are runnable on busy cores the
# kernel runs the committer first. Measured with bench/collector_throughput.py's load, rounds
# of 3 s alternating on one collector (renice): +7% requests/s at niceness 5 (9 rounds of 11
# faster), the same p99; 15 did no better. Lowering one's own priority needs no privilege.
WORKER_NICENESS = 5
# The garbage collector looks for cycles among the young objects every 700 allocations by
# default: with a hundred records (dicts) per request, every few requests. Its thresholds here
# make that every 100,000 (cyclic garbage waits longer; the rest is freed by reference counting
# as before). Measured with bench/collector_throughput.py's load: ~4% less CPU per request.
GC_THRESHOLDS = (100_000, 50, 100)


def run_collector(
    config: CollectorConfig,
    host: str,
    port: int,
    workers: int = 1,
    access_log: bool = False,
    on_ready: Callable[[int], None] | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT: in this process (one worker) or as a supervisor of several.

    Returns the exit code (non-zero when workers kept dying).
    """
    parent = tempfile.gettempdir()
    for stale in remove_stale_instances(parent):
        log.info("removed %s, left by a collector that was killed", stale)
    if workers <= 1:
        from kubetune.collector.server import serve

        run_loop(serve(config, host, port, access_log=access_log, on_ready=on_ready))
        return 0
    instance, lock = claim_instance(parent)
    own_metrics = not os.environ.get(MULTIPROC_ENV)
    try:
        if own_metrics:  # before prometheus_client is imported
            os.environ[MULTIPROC_ENV] = os.path.join(instance, "metrics")
            os.mkdir(os.environ[MULTIPROC_ENV], 0o700)
        return Supervisor(config, host, port, workers, access_log, instance).run(on_ready)
    finally:
        if own_metrics:
            del os.environ[MULTIPROC_ENV]
        shutil.rmtree(instance, ignore_errors=True)
        os.close(lock)
        # again: a collector killed just before this one started had workers still ending
        remove_stale_instances(parent)


def listen(
    host: str, port: int, wait: float = BIND_WAIT_SECONDS, reuse_port: bool = False
) -> socket.socket:
    """A listening socket, waiting while a killed collector's workers still hold the port."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return socket.create_server((host, port), backlog=1024, reuse_port=reuse_port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Supervisor:
    """Forks ``workers`` HTTP processes on one port and a committer, and keeps them running."""

    def __init__(
        self,
        config: CollectorConfig,
        host: str,
        port: int,
        workers: int,
        access_log: bool,
        instance: str,
    ) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.workers = workers
        self.access_log = access_log
        # the committer's Unix socket, in the instance folder (0700: this user's only)
        self.commit_address = os.path.join(instance, "commit.sock")
        self.children: dict[int, int] = {}  # pid -> worker slot (COMMITTER: the committer)
        self.stopping = False
        self.restarts: list[float] = []

    def run(self, on_ready: Callable[[int], None] | None) -> int:
        socks = self._listen()
        bound = int(socks[0].getsockname()[1])
        alive_read, alive_write = os.pipe()  # EOF for the workers when this process is gone
        os.set_inheritable(alive_read, True)
        commit_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        commit_sock.bind(self.commit_address)
        commit_sock.listen(1024)
        socks.append(commit_sock)  # the last slot's: the committer's (COMMITTER == -1)
        log.info("collector supervisor on %s:%d: %d workers", self.host, bound, self.workers)
        self._spawn(COMMITTER, socks, alive_read, alive_write)
        for slot in range(self.workers):
            self._spawn(slot, socks, alive_read, alive_write)
        if on_ready is not None:
            on_ready(bound)
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            return self._wait(socks, alive_read, alive_write)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for sock in socks:
                sock.close()
            os.close(alive_read)
            os.close(alive_write)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self.stopping:
            log.info("stopping: the workers finish the requests in flight")
        self.stopping = True
        for pid, slot in list(self.children.items()):
            if slot != COMMITTER:  # the committer is stopped once the workers are gone
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    def _listen(self) -> list[socket.socket]:
        """One listening socket per worker slot on one port (SO_REUSEPORT): the kernel spreads
        new connections evenly over them. On one shared socket the worker that woke first
        accepted a whole burst of keep-alive connections (measured: 16 connections split about
        11/5, one worker saturated while the other idled). The supervisor keeps every socket
        open: connections that reach a dead worker's socket wait in its backlog for the worker
        it starts in its place."""
        first = listen(self.host, self.port, reuse_port=True)
        bound = int(first.getsockname()[1])
        return [first, *(listen(self.host, bound, reuse_port=True) for _ in range(1, self.workers))]

    def _wait(self, socks: list[socket.socket], alive_read: int, alive_write: int) -> int:
        """Reap workers until all are gone after a stop; restart those that die before."""
        code = 0
        while self.children:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                break
            slot = self.children.pop(pid, None)
            if slot is None:
                continue
            _forget_metrics(pid)
            if self.stopping:
                self._stop_committer_after_workers()
                continue
            name = "committer" if slot == COMMITTER else f"worker {slot}"
            log.error("collector %s (pid %d) ended: %s", name, pid, _describe(status))
            if self._too_many_restarts():
                log.error("workers keep dying: stopping the collector")
                code = 1
                self._on_signal(signal.SIGTERM, None)
                continue
            self._spawn(slot, socks, alive_read, alive_write)
        return code

    def _stop_committer_after_workers(self) -> None:
        if all(slot == COMMITTER for slot in self.children.values()):
            for pid in self.children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

    def _too_many_restarts(self) -> bool:
        now = time.monotonic()
        self.restarts = [t for t in self.restarts if now - t < 60.0] + [now]
        return len(self.restarts) > RESTARTS_PER_MINUTE

    def _spawn(
        self, slot: int, socks: list[socket.socket], alive_read: int, alive_write: int
    ) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            self.children[pid] = slot
            return
        code = 0
        try:  # the worker: never returns into the supervisor's code
            os.close(alive_write)
            own = socks[slot]
            for other in socks:
                if other is not own:
                    other.close()  # only the supervisor keeps the other slots' sockets
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, signal.SIG_DFL)
            config = dataclasses.replace(self.config, writer=writer_id())
            if slot == COMMITTER:
                _serve_committer(config, own, alive_read)
            else:
                _serve_worker(config, own, alive_read, self.access_log, self.commit_address)
        except BaseException:  # reported, then the worker ends
            traceback.print_exc()
            code = 1
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)


def _serve_worker(
    config: CollectorConfig, sock: socket.socket, alive: int, access: bool, committer: str
) -> None:
    from kubetune.collector.server import serve

    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    run_loop(
        serve(config, sock=sock, access_log=access, supervisor_pipe=alive, commit_address=committer)
    )


def _serve_committer(config: CollectorConfig, sock: socket.socket, alive: int) -> None:
    from kubetune.collector.committer import serve_committer

    run_loop(serve_committer(config, sock, alive))


def run_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on uvloop where it is installed (Linux, macOS), else on asyncio's loop.

    Measured with bench/collector_throughput.py: uvloop cuts a worker's CPU per request by
    about 10% (its event loop and transports are C), for the same behaviour.

    The GIL switch interval drops from 5 ms to 0.5 ms: the commit thread releases the GIL in
    each of its system calls (lock, append, fdatasync, marker) and, while the event loop
    parses requests, waited up to a whole interval to get it back after each one, so every
    group commit, and every request waiting on it, took milliseconds longer (measured: +15-35%
    records/s with 16 clients). The garbage collector runs less often (``GC_THRESHOLDS``).
    """
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        import uvloop
    except ImportError:  # Windows: asyncio's own loop
        asyncio.run(main)
    else:
        uvloop.run(main)


def _forget_metrics(pid: int) -> None:
    """Drop a dead worker's live gauges (its counters stay in the sums)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"
