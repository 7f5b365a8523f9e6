"""The committer of a ``--workers N`` collector: one process writes the store for all workers.

The HTTP workers do what costs CPU per request (HTTP, auth, JSON parsing, validation, the
lines' encoding) in parallel; the committer does what must happen in one place (the id index,
group commits, the segments). A worker sends each request's valid records (its ids and its
lines) over a Unix socket to the committer and answers the client with what the committer
replies once the records are durable: (accepted, duplicates), or the refusal (429 when the
store lags, 503 when a commit failed) with its Retry-After.

So a pod is one writer of its store, whatever its number of workers: one id index (a record
id is found whichever worker receives it, and a batch sent twice at once to two workers is
written once), one open segment, one commit at a time. Measured with
bench/collector_throughput.py on 2 cores: workers that were each a writer serialized their
commits on the store's lock and each indexed the other's ids, so a second worker added no
records/s; with the committer the workers scale (see docs/feedback.md).

The frames, little-endian:

- request: ``<IIHHI`` (bytes after the header, sequence number, namespace bytes, loop bytes,
  ids bytes), the namespace and loop (UTF-8), the ids (a JSON array), then the lines (each
  ends with its only newline: the lines are ASCII JSON, their strings' newlines escaped);
- ping: a request with no namespace (zero bytes after the header), answered 200 with the
  committer's readiness as its text ("" when ready), for a worker's ``/readyz``;
- reply: ``<IIHBII`` (bytes after the header, sequence number, HTTP status, Retry-After
  seconds, accepted, duplicates), then for a refusal its reason and message (UTF-8, a NUL
  between them).

If the committer dies, the requests it held get a 503 (their records may or may not be
committed: a retry is acknowledged as duplicates where they are) and the supervisor starts
another, which accepts on the same listening socket (connections made meanwhile wait in its
backlog).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import signal
import socket
import struct
import time
from typing import Any, cast

import orjson

from kubetune.collector.batch import Batch
from kubetune.collector.commits import CommitRefused, LoopCommits, Ticket, readiness, stalled
from kubetune.collector.config import CollectorConfig
from kubetune.collector.metrics import Metrics

__all__ = ["RemoteCommits", "serve_committer"]
log = logging.getLogger("kubetune.collector")
_REQUEST = struct.Struct("<IIHHI")
_REPLY = struct.Struct("<IIHBII")
_UNREACHABLE = "the committer is unreachable; retry"
PING_SECONDS = 1.0  # a worker's /readyz: how long it waits for the committer's answer
_Reply = tuple[int, int, int, int, str]  # status, Retry-After, accepted, duplicates, text


def encode_request(seq: int, namespace: str, loop: str, batch: Batch) -> bytes:
    names = (namespace.encode(), loop.encode())
    ids = orjson.dumps(batch.ids)
    size = len(names[0]) + len(names[1]) + len(ids) + len(batch.data)
    header = _REQUEST.pack(size, seq, len(names[0]), len(names[1]), len(ids))
    return b"".join((header, *names, ids, batch.data))


def encode_reply(
    seq: int, status: int, retry_after: int, counts: tuple[int, int], text: str
) -> bytes:
    body = text.encode()
    return _REPLY.pack(len(body), seq, status, min(retry_after, 255), *counts) + body


def _refusal(seq: int, exc: CommitRefused) -> bytes:
    return encode_reply(seq, exc.status, exc.retry_after, (0, 0), f"{exc.reason}\0{exc}")


class _Coalesced:
    """Writes to a transport, coalesced: what is written during one turn of the event loop
    goes out in one system call at its end (the replies of one group commit; the requests
    that arrived together), so the other process wakes once for all of them."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self.pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self.pending.append(data)

    def _flush(self) -> None:
        data, self.pending = self.pending, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data[0] if len(data) == 1 else b"".join(data))


class _Framed(asyncio.Protocol):
    """A connection between a worker and the committer: frames in (``buffer``), coalesced
    writes out."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.out = _Coalesced()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's: not a subclass
        self.out.transport = self.transport


class _CommitterProtocol(_Framed):
    """One worker's connection: requests in, a reply for each once it is settled."""

    def __init__(self, commits: LoopCommits, tasks: set[asyncio.Future[Any]]) -> None:
        super().__init__()
        self.commits = commits
        self.tasks = tasks

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        start, end = 0, len(buffer)
        with memoryview(buffer) as view:  # released before the buffer is cut below
            while end - start >= _REQUEST.size:
                size, seq, ns_bytes, loop_bytes, ids_bytes = _REQUEST.unpack_from(view, start)
                at = start + _REQUEST.size
                if end - at < size:
                    break
                start = at + size
                self._start(seq, view[at:start], ns_bytes, loop_bytes, ids_bytes)
        del buffer[:start]

    def _start(self, seq: int, frame: memoryview, ns_bytes: int, loop_bytes: int, ids: int) -> None:
        """Read one request (``frame``: its bytes after the header) and commit it."""
        if not ns_bytes:  # a ping (no namespace is empty): answered with the readiness
            self.out.write(encode_reply(seq, 200, 0, (0, 0), self.commits.unready_reason()))
            return
        names = ns_bytes + loop_bytes
        try:
            namespace = str(frame[:ns_bytes], "utf-8")
            loop = str(frame[ns_bytes:names], "utf-8")
            batch = Batch(orjson.loads(frame[names : names + ids]), bytes(frame[names + ids :]))
            if type(batch.ids) is not list or not batch.is_whole():
                raise ValueError("not one line per id")
        except ValueError:  # a bug of the worker's: a JSON 500
            log.exception("request %d: unreadable", seq)
            self.out.write(encode_reply(seq, 500, 0, (0, 0), "internal_error\0bad request"))
            return
        try:
            ticket = self.commits.submit(namespace, loop, batch)
        except CommitRefused as exc:
            self.out.write(_refusal(seq, exc))
            return
        waited: asyncio.Future[Any]
        if ticket is None:  # its loop's writer to open first
            waited = asyncio.ensure_future(self._answer(seq, namespace, loop, batch))
        else:  # answered from a callback (no task, no coroutine): its commit's, in the main
            futures = ticket.futures()  # other requests' commits too (none: all committed)
            if len(futures) == 1:
                waited = futures[0]
            else:
                waited = asyncio.gather(*futures, return_exceptions=True)  # counts() tells
            waited.add_done_callback(functools.partial(self._settled, seq, ticket))
        self.tasks.add(waited)
        waited.add_done_callback(self.tasks.discard)

    def _settled(self, seq: int, ticket: Ticket, _done: asyncio.Future[Any]) -> None:
        try:
            reply = encode_reply(seq, 200, 0, ticket.counts(), "")
        except CommitRefused as exc:
            reply = _refusal(seq, exc)
        self.out.write(reply)

    async def _answer(self, seq: int, namespace: str, loop: str, batch: Batch) -> None:
        try:
            counts = await self.commits.commit(namespace, loop, batch)
            reply = encode_reply(seq, 200, 0, counts, "")
        except CommitRefused as exc:
            reply = _refusal(seq, exc)
        except Exception:  # a bug: the worker answers a JSON 500
            log.exception("%s/%s: unexpected error in the committer", namespace, loop)
            reply = encode_reply(seq, 500, 0, (0, 0), "internal_error\0unexpected error")
        self.out.write(reply)


async def serve_committer(
    config: CollectorConfig, sock: socket.socket, supervisor_pipe: int
) -> None:
    """Commit the workers' records until SIGTERM (sent once every worker has ended), then
    finish the commits in flight. ``sock``: the listening Unix socket the supervisor made."""
    commits = LoopCommits(config, Metrics(), inline=True)
    tasks: set[asyncio.Future[Any]] = set()  # the requests in flight: their answers
    loop = asyncio.get_running_loop()
    server = await loop.create_unix_server(lambda: _CommitterProtocol(commits, tasks), sock=sock)
    log.info("collector committer (pid %d) writing %s", os.getpid(), config.store)
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        # Ctrl-C reaches every process of the terminal's group: the committer waits for the
        # supervisor's SIGTERM, sent once the workers have finished their requests
        loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.add_reader(supervisor_pipe, _supervisor_gone)
    try:
        await stop.wait()
    finally:
        server.close()
        if tasks:
            await asyncio.wait(tasks)  # (which cancels none of them if it is cancelled)
        await commits.stop()


def _supervisor_gone() -> None:
    log.error("the collector supervisor is gone: the committer ends")
    os._exit(3)


class _ReplyProtocol(_Framed):
    """A worker's connection to the committer: the replies, matched to their requests."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: dict[int, asyncio.Future[_Reply]] = {}
        self.lost = False

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        start, end = 0, len(buffer)
        while end - start >= _REPLY.size:
            size, seq, status, retry_after, accepted, duplicates = _REPLY.unpack_from(buffer, start)
            at = start + _REPLY.size
            if end - at < size:
                break
            text = bytes(buffer[at : at + size]).decode() if size else ""
            start = at + size
            future = self.waiting.pop(seq, None)
            if future is not None and not future.done():
                future.set_result((status, retry_after, accepted, duplicates, text))
        del buffer[:start]

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ConnectionError(_UNREACHABLE))
        self.waiting.clear()


async def _reply(
    protocol: _ReplyProtocol, seq: int, future: asyncio.Future[_Reply], timeout: float
) -> _Reply:
    """Request ``seq``'s reply within ``timeout`` seconds (TimeoutError; ConnectionError when
    the connection is lost); a reply that comes later is dropped."""
    try:
        async with asyncio.timeout(timeout):
            return await future
    finally:
        protocol.waiting.pop(seq, None)


class RemoteCommits:
    """A worker's :class:`~kubetune.collector.commits.Committer`: the committer process,
    reached at the Unix socket ``address`` (one connection, opened again when lost)."""

    def __init__(self, address: str, config: CollectorConfig) -> None:
        self.address = address
        self.config = config
        self.inflight_bytes = 0  # sent, not answered yet
        self.last_failure = 0.0
        self._protocol: _ReplyProtocol | None = None
        self._connecting = asyncio.Lock()
        self._seq = itertools.count(1)

    async def _connected(self) -> _ReplyProtocol:
        protocol = self._protocol
        if protocol is not None and not protocol.lost:
            return protocol
        async with self._connecting:
            if self._protocol is None or self._protocol.lost:
                try:
                    _, self._protocol = await asyncio.get_running_loop().create_unix_connection(
                        _ReplyProtocol, self.address
                    )
                except OSError as exc:
                    self.last_failure = time.monotonic()
                    raise CommitRefused(503, "store_error", _UNREACHABLE, 1) from exc
            return self._protocol

    async def _request(self) -> tuple[_ReplyProtocol, int, asyncio.Future[_Reply]]:
        """A new request's connection, sequence number and reply (its frame to write next)."""
        protocol = await self._connected()
        seq = next(self._seq)
        future: asyncio.Future[_Reply] = asyncio.get_running_loop().create_future()
        protocol.waiting[seq] = future
        return protocol, seq, future

    async def commit(self, namespace: str, loop: str, batch: Batch) -> tuple[int, int]:
        protocol, seq, future = await self._request()
        size = batch.size
        protocol.out.write(encode_request(seq, namespace, loop, batch))
        del batch  # not kept while the commit is awaited (see CollectorService._post)
        self.inflight_bytes += size
        try:
            reply = await _reply(protocol, seq, future, self.config.commit_timeout)
        except TimeoutError:  # a frozen committer (or the store it waits for): not ready
            self.last_failure = time.monotonic()
            raise stalled(self.config.commit_timeout) from None
        except ConnectionError as exc:
            self.last_failure = time.monotonic()
            raise CommitRefused(503, "store_error", _UNREACHABLE, 1) from exc
        finally:
            self.inflight_bytes -= size
        status, retry_after, accepted, duplicates, text = reply
        if status != 200:
            reason, _, message = text.partition("\0")
            if status == 503:
                self.last_failure = time.monotonic()
            raise CommitRefused(status, reason, message, retry_after)
        return accepted, duplicates

    async def not_ready(self) -> str:
        """This worker's readiness, then the committer's (which it answers to a ping): not
        ready when the committer does not answer within ``PING_SECONDS``."""
        reason = readiness(self.inflight_bytes, self.config.max_pending_bytes, self.last_failure)
        if reason:
            return reason
        try:
            protocol, seq, future = await self._request()
            protocol.out.write(_REQUEST.pack(0, seq, 0, 0, 0))
            return (await _reply(protocol, seq, future, PING_SECONDS))[4]
        except TimeoutError:
            return "committer not answering"
        except (ConnectionError, CommitRefused):
            return "committer unreachable"

    def update_gauges(self) -> None:
        """The store's lag gauges are the committer's (this process commits nothing)."""

    async def stop(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
