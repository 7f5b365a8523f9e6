"""Group commits of a loop's records to its store, and the answer each request gets.

:class:`LoopCommits` holds one :class:`LoopWriter` per FeedbackLoop (opened, its committed ids
indexed, at the first request for it) and answers ``commit(namespace, loop, records)`` with
(accepted, duplicates) once the records are durable, or raises :class:`CommitRefused` (429 when
the store lags, 503 when it failed). It runs where the store is written: in the HTTP process of
a one-process collector, in the committer process of a supervisor's (see
:mod:`kubetune.collector.committer`), which the HTTP workers reach over a Unix socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from kubetune.collector.batch import Batch
from kubetune.collector.config import CollectorConfig
from kubetune.collector.ids import slots
from kubetune.collector.metrics import Metrics
from kubetune.collector.store import LoopStore, backend_for, loop_uri

__all__ = ["CommitRefused", "Committer", "LoopCommits", "LoopWriter", "StoreUnavailable", "Ticket"]
log = logging.getLogger("kubetune.collector")


@dataclass
class _Group:
    """The not-yet-committed records of one request; ``future`` gets a new-or-not flag each."""

    batch: Batch
    since: float
    future: asyncio.Future[list[bool]]
    epoch: int  # the store's epoch when its ids were found new (LoopStore.commit)
    slots: list[int] | None = None  # its ids' index shards, when it holds the request's all


@dataclass
class Ticket:
    """What one request waits for: its own group and the records that another group (of this
    request, for an id twice in a batch, or of another request) is committing."""

    group: _Group | None
    borrowed: list[tuple[_Group, str]]  # (the group committing it, the record id)
    duplicates: int

    def futures(self) -> list[asyncio.Future[list[bool]]]:
        """The commits this request waits for: its own group's, and those of the groups that
        commit its other records."""
        groups = {id(g): g for g, _ in self.borrowed}
        if self.group is not None:
            groups[id(self.group)] = self.group
        return [g.future for g in groups.values()]

    async def wait(self) -> tuple[int, int]:
        """``counts`` once every record is committed."""
        futures = self.futures()
        if len(futures) == 1:
            with contextlib.suppress(StoreUnavailable):  # counts() says it: a 503
                await asyncio.shield(futures[0])
        elif futures:
            await asyncio.shield(asyncio.gather(*futures, return_exceptions=True))
        return self.counts()

    def counts(self) -> tuple[int, int]:
        """(accepted, duplicates) once the commits are done; CommitRefused (503) when one failed.

        ``accepted`` counts the lines this request wrote; every other record of it (committed
        before, twice in the batch, or written by another request's commit, which it waited
        for) is a duplicate, so the two add up to the request's valid records.
        """
        try:
            own = self.group.future.result() if self.group is not None else []
            for group, _ in self.borrowed:
                group.future.result()
        except StoreUnavailable as exc:
            raise CommitRefused(503, "store_error", "commit failed; retry", 1) from exc
        accepted = sum(own)  # False: another writer (replica, worker) committed it first
        return accepted, len(own) - accepted + len(self.borrowed) + self.duplicates


class LoopWriter:
    """Group commits of one loop: one commit at a time, each takes every request pending.

    Requests that arrive while a commit runs queue their records (counted in the service's
    ``pending_bytes``, bounded by ``max_pending_bytes``: over it the service answers 429); the
    next commit writes them all with one append and one fdatasync and acknowledges them
    together.
    """

    def __init__(self, host: LoopCommits, namespace: str, loop: str) -> None:
        self.host = host
        self.namespace = namespace
        self.loop = loop
        config = host.config
        self.store = LoopStore(
            backend_for(loop_uri(config.store, namespace, loop)),
            config.writer,
            segment_bytes=config.segment_bytes,
            segment_seconds=config.segment_seconds,
            retention_seconds=config.retention_seconds,
        )
        self.pending: list[_Group] = []
        self.inflight: set[str] = set()  # the ids of the pending and committing groups
        self.committing: list[_Group] = []
        metrics = host.metrics  # this loop's series, looked up once
        self.bytes = metrics.bytes.labels(namespace, loop)
        self.segments = metrics.segments.labels(namespace, loop)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ready: asyncio.Future[None] | None = None

    @property
    def started(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        if self._task is not None:
            return  # started
        if self.ready is None:
            self.ready = asyncio.get_running_loop().create_future()
            try:
                loaded = await asyncio.to_thread(self.store.load)
            except Exception as exc:
                self.ready.set_exception(exc)
                self.ready.exception()  # retrieved: waiting requests re-raise it
                raise
            log.info("%s/%s: %d committed ids indexed", self.namespace, self.loop, loaded)
            _out_of_collections()
            if self.store.torn_tails:
                log.warning(
                    "%s/%s: cut %d torn segment tails",
                    self.namespace,
                    self.loop,
                    self.store.torn_tails,
                )
            self._task = asyncio.create_task(self._run(), name=f"commit {self.loop}")
            self.ready.set_result(None)
        await asyncio.shield(self.ready)

    def submit(self, batch: Batch, now: float) -> Ticket:
        """Queue the records whose id is neither committed nor being committed."""
        committed, inflight = self.store.ids, self.inflight
        future = asyncio.get_running_loop().create_future()
        epoch = self.store.epoch  # read before the ids are looked up (see LoopStore)
        ids = batch.ids
        where = slots(ids)  # computed once: for this look-up and the commit's insert
        if ids and committed.isdisjoint(ids, where) and inflight.isdisjoint(ids):
            before = len(inflight)
            inflight.update(ids)
            if len(inflight) - before == len(ids):  # the common case: every id new, none twice
                return self._queue(_Group(batch, now, future, epoch, where), [], 0)
            inflight.difference_update(ids)  # an id twice in the batch: one by one below
        group = _Group(batch, now, future, epoch)  # its batch: the records kept below
        borrowed: list[tuple[_Group, str]] = []
        holders: dict[str, _Group] | None = None
        duplicates = 0
        kept: list[tuple[str, bytes]] = []
        for record_id, line in batch.records():
            if record_id in committed:
                duplicates += 1
                continue
            if record_id in inflight:  # another request's, or this one's (twice in the batch)
                if holders is None:
                    holders = self._holders()
                borrowed.append((holders.get(record_id, group), record_id))
                continue
            inflight.add(record_id)
            kept.append((record_id, line))
        if not kept:
            return Ticket(None, borrowed, duplicates)
        group.batch = Batch.of(kept)
        return self._queue(group, borrowed, duplicates)

    def _holders(self) -> dict[str, _Group]:
        """Which group holds each id being committed (for a request that sends ids another
        one is committing: a client's retry while its first try is in flight)."""
        return {
            record_id: group
            for group in (*self.committing, *self.pending)
            for record_id in group.batch.ids
        }

    def _queue(self, group: _Group, borrowed: list[tuple[_Group, str]], duplicates: int) -> Ticket:
        self.pending.append(group)
        self.host.pending_bytes += group.batch.size
        self._wake.set()
        return Ticket(group, borrowed, duplicates)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                await self._commit(self._take(self.store.segment_bytes))
                await asyncio.sleep(0)  # the answers go out, arrived records join the next

    def _take(self, limit: int) -> list[_Group]:
        size, count = 0, 0
        for group in self.pending:
            if count and size + group.batch.size > limit:
                break
            size += group.batch.size
            count += 1
        taken, self.pending = self.pending[:count], self.pending[count:]
        return taken

    async def _commit(self, groups: list[_Group]) -> None:
        metrics = self.host.metrics
        self.committing = groups
        batch = Batch.joined([group.batch for group in groups])
        try:
            claimed_at = min(group.epoch for group in groups)  # when their ids were new
            where = _joined_slots(groups)
            if self.host.inline and self.store.backend.quick:
                fresh = await self._commit_inline(batch, claimed_at, where)
            else:
                fresh = await asyncio.to_thread(self.store.commit, batch, claimed_at, where)
        except Exception as exc:
            log.error("%s/%s: commit failed: %s", self.namespace, self.loop, exc)
            self.host.last_failure = time.monotonic()
            self.store.mark_dirty()
            for group in groups:
                group.future.set_exception(StoreUnavailable(str(exc)))
                group.future.exception()  # retrieved: the requests re-raise it
            self._release(groups)
            return
        done = time.monotonic()
        written = start = 0
        for group in groups:
            flags = fresh[start : start + len(group.batch)]
            if all(flags):
                written += group.batch.size
            else:
                lines = group.batch.lines()
                written += sum(len(line) for line, new in zip(lines, flags, strict=True) if new)
            start += len(group.batch)
            metrics.commit.observe(done - group.since)
            group.future.set_result(flags)
        self.bytes.inc(written)
        if written:
            self.segments.inc()
        self._release(groups)
        self.host.update_gauges()

    async def _commit_inline(
        self, batch: Batch, claimed_at: int, where: list[int] | None
    ) -> list[bool]:
        """``LoopStore.commit`` on this thread but for the disk's flush, which runs in a worker
        thread while this one reads (and validates, and queues) the next requests."""
        pending = self.store.write(batch, claimed_at, where)
        try:
            await asyncio.to_thread(self.store.flush, pending)
        except BaseException:  # cancelled (the collector stops) too: the lock is given back
            self.store.abandon(pending)
            raise
        return self.store.settle(pending)

    def _release(self, groups: list[_Group]) -> None:
        self.committing = []
        inflight = self.inflight
        for group in groups:  # a group's records are the ids it holds
            inflight.difference_update(group.batch.ids)
            self.host.pending_bytes -= group.batch.size

    def oldest_pending(self) -> float | None:
        """When the oldest record not committed yet (committing or queued) arrived."""
        groups = self.committing or self.pending  # the committing groups came first
        return groups[0].since if groups else None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _joined_slots(groups: list[_Group]) -> list[int] | None:
    """The index shards of the ids of ``groups``' records, in order; None unless every group
    has them."""
    if len(groups) == 1:
        return groups[0].slots
    joined: list[int] = []
    for group in groups:
        if group.slots is None:
            return None
        joined += group.slots
    return joined


def _out_of_collections() -> None:
    """Keep what lives now (a loop's id index: millions of ids in sets, which the garbage
    collector would traverse at each full collection, ~190 ms at 2.6 million ids, a stall of
    every request) out of all later collections: what is garbage goes first, the rest is frozen
    (``gc.freeze``; freed by reference counting as before, but never collected as a cycle).
    Once per loop, when its index is loaded."""
    gc.collect()
    gc.freeze()


def readiness(pending_bytes: int, max_pending_bytes: int, last_failure: float) -> str:
    """Why the collector should get no traffic now ("" when it should): records waiting for
    a commit near the limit, or a commit that failed (or stalled) in the last 5 seconds."""
    if pending_bytes > 0.9 * max_pending_bytes:
        return "store lagging"
    if last_failure and time.monotonic() - last_failure < 5.0:
        return "store failing"
    return ""


def stalled(timeout: float) -> CommitRefused:
    """The answer to a request whose commit did not end within ``timeout`` seconds (a hung
    disk or network store, a frozen committer): 503, nothing acknowledged. Its records may
    still be committed later: a retry is answered as duplicates where they are."""
    return CommitRefused(
        503, "store_stalled", f"no commit within --commit-timeout ({timeout:g} s); retry", 1
    )


class StoreUnavailable(RuntimeError):
    """A commit failed: the records are not acknowledged."""


class CommitRefused(Exception):
    """Records not committed, and the HTTP answer that says so (``status``, ``reason``,
    ``message``, ``retry_after`` seconds): nothing of the request was acknowledged."""

    def __init__(self, status: int, reason: str, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class Committer(Protocol):
    """What the HTTP side needs to make records durable (here or in another process)."""

    async def commit(self, namespace: str, loop: str, batch: Batch) -> tuple[int, int]: ...

    async def not_ready(self) -> str:
        """Why the collector should not get traffic now ("" when it should)."""
        ...

    def update_gauges(self) -> None: ...

    async def stop(self) -> None: ...


class LoopCommits:
    """The loops' writers of one process, and the bounds on what waits for a commit.

    ``inline``: commit to a local or PVC store on the event loop's thread but for the disk's
    flush (the ``pwrite``, the index and the marker here; the fdatasync, about a millisecond,
    in a worker thread while the loop reads the next requests); for a process that does
    nothing else (the committer). Otherwise the whole commit runs in a worker thread; an S3
    store (a PUT) always does.
    """

    def __init__(self, config: CollectorConfig, metrics: Metrics, inline: bool = False) -> None:
        self.config = config
        self.metrics = metrics
        self.inline = inline
        self.writers: dict[tuple[str, str], LoopWriter] = {}
        self.pending_bytes = 0
        self.last_failure = 0.0

    async def commit(self, namespace: str, loop: str, batch: Batch) -> tuple[int, int]:
        """(accepted, duplicates) of the records of ``batch`` once every one is durable.
        CommitRefused when they are not."""
        ticket = self.submit(namespace, loop, batch)
        if ticket is None:
            writer = await self._writer(namespace, loop)
            ticket = writer.submit(batch, time.monotonic())
        try:
            async with asyncio.timeout(self.config.commit_timeout):
                return await ticket.wait()  # shielded: the commit goes on after a timeout
        except TimeoutError:
            self.last_failure = time.monotonic()
            raise stalled(self.config.commit_timeout) from None

    def submit(self, namespace: str, loop: str, batch: Batch) -> Ticket | None:
        """``commit`` up to the wait, without a coroutine: the ticket whose ``futures`` end
        with the commit (then ``counts`` is the answer), or None when the loop's writer is not
        open yet (``commit`` opens it). CommitRefused when the records are refused now."""
        if self.pending_bytes + batch.size > self.config.max_pending_bytes:
            raise CommitRefused(429, "store_lagging", "the store lags behind", retry_after=1)
        if self.last_failure and time.monotonic() - self.last_failure < 1.0:
            raise CommitRefused(503, "store_error", "the store failed a moment ago", 1)
        writer = self.writers.get((namespace, loop))
        if writer is None or not writer.started:
            return None
        return writer.submit(batch, time.monotonic())

    async def _writer(self, namespace: str, loop: str) -> LoopWriter:
        key = (namespace, loop)
        writer = self.writers.get(key)
        if writer is None:
            writer = self.writers[key] = LoopWriter(self, namespace, loop)
        try:
            await writer.start()
        except Exception as exc:
            if self.writers.get(key) is writer:
                del self.writers[key]
            log.error("%s/%s: cannot open the store: %s", namespace, loop, exc)
            raise CommitRefused(503, "store_error", "the store cannot be read", 5) from exc
        return writer

    async def not_ready(self) -> str:
        return self.unready_reason()

    def unready_reason(self) -> str:
        """``not_ready`` now; also "store stalled" while a record has waited for its commit
        longer than ``commit_timeout``."""
        reason = readiness(self.pending_bytes, self.config.max_pending_bytes, self.last_failure)
        lag = self.lag()
        if not reason and lag > self.config.commit_timeout:
            reason = "store stalled"
        return reason

    def lag(self) -> float:
        """Seconds the oldest record not committed yet has waited (0: none waits)."""
        oldest = [t for w in self.writers.values() if (t := w.oldest_pending()) is not None]
        return time.monotonic() - min(oldest) if oldest else 0.0

    def update_gauges(self) -> None:
        """This process's store lag: pending bytes and the age of the oldest pending record."""
        self.metrics.lag.set(self.lag())
        self.metrics.pending.set(self.pending_bytes)

    async def stop(self) -> None:
        await asyncio.gather(*(w.stop() for w in self.writers.values()))
