"""The collector's HTTP service (aiohttp): auth, limits, validation, group commit, metrics.

``POST /v1/feedback/{namespace}/{loop}`` takes one record, a JSON array or JSONL. The answer:

- 200 ``{"accepted", "duplicates"}``: every record is in a committed segment (or was already);
- 400 ``{"accepted", "duplicates", "rejected": [{index, id, errors: [{path, reason}]}]}``: the
  valid records of the batch *are* committed (a retry of the whole batch is safe: their ids
  are known), every invalid one is listed; a body that cannot be read at all is rejected whole
  (``{"error", "message"}``);
- 401 (no or unknown token), 403 (token not bound to this loop), 404 (unknown loop when
  ``--loop`` restricts them), 408 (body not received within ``body_timeout``), 413 (body or
  decompressed body over ``max_body_bytes``, or the batch's lines over ``max_pending_bytes``),
  415 (content type), 429 with ``Retry-After`` (too many requests in flight or the store lags:
  nothing was written), 503 with ``Retry-After`` (the commit failed: nothing acknowledged,
  retry), 500 (a bug: logged and counted like every answer).

``accepted`` counts the lines the request wrote; its other valid records are ``duplicates``
(committed before, twice in the batch, or committed by a concurrent request it waited for).

Records of concurrent requests to one loop are committed together (group commit): a single
commit at a time per loop, the next one takes everything that arrived meanwhile, up to a
segment's size. Memory is bounded: at most ``max_inflight`` requests of at most
``max_body_bytes`` each, and the records waiting for a commit are counted in ``max_pending_bytes``
(over it: 429).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import signal
import socket
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from kubetune.collector.auth import TokenStore
from kubetune.collector.config import CollectorConfig
from kubetune.collector.records import BodyError, split_body, validate_batch
from kubetune.collector.store import LoopStore, backend_for, loop_uri

__all__ = ["CollectorConfig", "CollectorService", "serve"]
log = logging.getLogger("kubetune.collector")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_CONTENT_TYPES = {
    "",
    "application/json",
    "application/x-ndjson",
    "application/jsonl",
    "application/x-jsonlines",
    "text/plain",
    "application/x-www-form-urlencoded",  # what `curl -d` sends; the body is still JSON
}
_CHUNK = 1 << 16


class Metrics:
    """The collector's Prometheus series; summed over the workers of a supervisor (each worker
    writes its own files under ``PROMETHEUS_MULTIPROC_DIR``, any worker serves the sum)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["namespace", "loop"]
        self.accepted = Counter(
            "kubetune_collector_records_accepted",
            "Records committed to a loop's store.",
            labels,
            registry=self.registry,
        )
        self.duplicates = Counter(
            "kubetune_collector_records_duplicate",
            "Records acknowledged without writing: their id was already committed.",
            labels,
            registry=self.registry,
        )
        self.rejected = Counter(
            "kubetune_collector_records_rejected",
            "Records (or whole requests) refused, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "kubetune_collector_bytes",
            "Bytes of committed JSONL lines.",
            labels,
            registry=self.registry,
        )
        self.requests = Counter(
            "kubetune_collector_requests",
            "HTTP requests by status code.",
            ["code"],
            registry=self.registry,
        )
        self.commit = Histogram(
            "kubetune_collector_commit_seconds",
            "Time from a request's records being queued to their durable commit (per request).",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.pending = Gauge(
            "kubetune_collector_pending_bytes",
            "Bytes of records waiting for a commit (store lag).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.lag = Gauge(
            "kubetune_collector_store_lag_seconds",
            "Age of the oldest record waiting for a commit.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.segments = Counter(
            "kubetune_collector_segment_commits",
            "Group commits to a segment (one append and fdatasync; one PUT on S3).",
            labels,
            registry=self.registry,
        )


@dataclass
class _Group:
    """The not-yet-committed records of one request; ``future`` gets a new-or-not flag each."""

    records: list[tuple[str, bytes]]
    size: int
    since: float
    future: asyncio.Future[list[bool]]
    epoch: int = -1  # the store's epoch when its ids were found new (LoopStore.commit)


@dataclass
class _Ticket:
    """What one request waits for: its own group and the records that another group (of this
    request, for an id twice in a batch, or of another request) is committing."""

    group: _Group | None
    borrowed: list[tuple[_Group, str]]  # (the group committing it, the record id)
    duplicates: int

    async def wait(self) -> tuple[int, int]:
        """(accepted, duplicates) once every record is committed; StoreUnavailable otherwise.

        ``accepted`` counts the lines this request wrote; every other record of it (committed
        before, twice in the batch, or written by another request's commit, which it waited
        for) is a duplicate, so the two add up to the request's valid records.
        """
        groups = {id(g): g for g, _ in self.borrowed}
        if self.group is not None:
            groups[id(self.group)] = self.group
        futures = [g.future for g in groups.values()]
        if len(futures) == 1:
            await asyncio.shield(futures[0])
        elif futures:
            await asyncio.shield(asyncio.gather(*futures))
        own = self.group.future.result() if self.group is not None else []
        accepted = sum(own)  # False: another writer (replica, worker) committed it first
        return accepted, len(own) - accepted + len(self.borrowed) + self.duplicates


class LoopWriter:
    """Group commits of one loop: one commit at a time, each takes every request pending.

    Requests that arrive while a commit runs queue their records (counted in the service's
    ``pending_bytes``, bounded by ``max_pending_bytes``: over it the service answers 429); the
    next commit writes them all with one append and one fdatasync and acknowledges them
    together.
    """

    def __init__(self, service: CollectorService, namespace: str, loop: str) -> None:
        self.service = service
        self.namespace = namespace
        self.loop = loop
        config = service.config
        self.store = LoopStore(
            backend_for(loop_uri(config.store, namespace, loop)),
            config.writer,
            segment_bytes=config.segment_bytes,
            segment_seconds=config.segment_seconds,
            retention_seconds=config.retention_seconds,
        )
        self.pending: list[_Group] = []
        self.inflight: dict[str, _Group] = {}  # id -> the group committing it
        metrics = service.metrics  # this loop's series, looked up once
        self.accepted = metrics.accepted.labels(namespace, loop)
        self.duplicates = metrics.duplicates.labels(namespace, loop)
        self.bytes = metrics.bytes.labels(namespace, loop)
        self.segments = metrics.segments.labels(namespace, loop)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.ready: asyncio.Future[None] | None = None

    async def start(self) -> None:
        if self.ready is None:
            self.ready = asyncio.get_running_loop().create_future()
            try:
                loaded = await asyncio.to_thread(self.store.load)
            except Exception as exc:
                self.ready.set_exception(exc)
                self.ready.exception()  # retrieved: waiting requests re-raise it
                raise
            log.info("%s/%s: %d committed ids indexed", self.namespace, self.loop, loaded)
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

    def submit(self, valid: list[tuple[str, bytes]], size: int, now: float) -> _Ticket:
        """Queue the records whose id is neither committed nor being committed (``size``: the
        bytes of their lines)."""
        committed, inflight = self.store.ids, self.inflight
        group = _Group([], 0, now, asyncio.get_running_loop().create_future())
        group.epoch = self.store.epoch  # read before the ids are looked up (see LoopStore)
        ids = [record_id for record_id, _ in valid]
        if ids and committed.keys().isdisjoint(ids) and inflight.keys().isdisjoint(ids):
            owned = dict.fromkeys(ids, group)
            if len(owned) == len(ids):  # the common case: every id new, none twice
                inflight.update(owned)
                group.records, group.size = valid, size
                return self._queue(group, [], 0)
        borrowed: list[tuple[_Group, str]] = []
        duplicates = size = 0
        for record_id, line in valid:
            if record_id in committed:
                duplicates += 1
                continue
            held = inflight.get(record_id)
            if held is not None:
                borrowed.append((held, record_id))
                continue
            inflight[record_id] = group
            group.records.append((record_id, line))
            size += len(line)
        if not group.records:
            return _Ticket(None, borrowed, duplicates)
        group.size = size
        return self._queue(group, borrowed, duplicates)

    def _queue(self, group: _Group, borrowed: list[tuple[_Group, str]], duplicates: int) -> _Ticket:
        self.pending.append(group)
        self.service.pending_bytes += group.size
        self._wake.set()
        return _Ticket(group, borrowed, duplicates)

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                await self._commit(self._take(self.store.segment_bytes))

    def _take(self, limit: int) -> list[_Group]:
        size, count = 0, 0
        for group in self.pending:
            if count and size + group.size > limit:
                break
            size += group.size
            count += 1
        taken, self.pending = self.pending[:count], self.pending[count:]
        return taken

    async def _commit(self, groups: list[_Group]) -> None:
        metrics = self.service.metrics
        records = [record for group in groups for record in group.records]
        try:
            claimed_at = min(group.epoch for group in groups)  # when their ids were new
            fresh = await asyncio.to_thread(self.store.commit, records, claimed_at)
        except Exception as exc:
            log.error("%s/%s: commit failed: %s", self.namespace, self.loop, exc)
            self.service.last_failure = time.monotonic()
            self.store.mark_dirty()
            for group in groups:
                group.future.set_exception(StoreUnavailable(str(exc)))
                group.future.exception()  # retrieved: the requests re-raise it
            self._release(groups)
            return
        done = time.monotonic()
        written = start = 0
        for group in groups:
            flags = fresh[start : start + len(group.records)]
            if all(flags):
                written += group.size
            else:
                written += sum(
                    len(line) for (_, line), new in zip(group.records, flags, strict=True) if new
                )
            start += len(group.records)
            metrics.commit.observe(done - group.since)
            group.future.set_result(flags)
        self.bytes.inc(written)
        if written:
            self.segments.inc()
        self._release(groups)
        self.service.update_gauges()

    def _release(self, groups: list[_Group]) -> None:
        inflight = self.inflight
        for group in groups:
            for record_id, _ in group.records:  # a group's records are the ids it holds
                del inflight[record_id]
            self.service.pending_bytes -= group.size

    def oldest_pending(self) -> float | None:
        return self.pending[0].since if self.pending else None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


class StoreUnavailable(RuntimeError):
    """A commit failed: the records are not acknowledged."""


class RequestError(Exception):
    def __init__(self, status: int, reason: str, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class CollectorService:
    def __init__(self, config: CollectorConfig, tokens: TokenStore) -> None:
        self.config = config
        self.tokens = tokens
        self.metrics = Metrics()
        self.writers: dict[tuple[str, str], LoopWriter] = {}
        self.pending_bytes = 0
        self.inflight_requests = 0
        self.last_failure = 0.0
        self._by_status: dict[int, Any] = {}  # status -> its series of metrics.requests

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post("/v1/feedback/{namespace}/{loop}", self.post_feedback)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, _app: web.Application) -> None:
        await asyncio.gather(*(w.stop() for w in self.writers.values()))

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(self, _request: web.Request) -> web.Response:
        if self.pending_bytes > 0.9 * self.config.max_pending_bytes:
            return web.json_response({"ready": False, "reason": "store lagging"}, status=503)
        if self.last_failure and time.monotonic() - self.last_failure < 5.0:
            return web.json_response({"ready": False, "reason": "store failing"}, status=503)
        return web.json_response({"ready": True})

    def update_gauges(self) -> None:
        """This process's store lag: pending bytes and the age of the oldest pending record."""
        oldest = [t for w in self.writers.values() if (t := w.oldest_pending()) is not None]
        self.metrics.lag.set(time.monotonic() - min(oldest) if oldest else 0.0)
        self.metrics.pending.set(self.pending_bytes)

    async def metrics_page(self, _request: web.Request) -> web.Response:
        self.update_gauges()
        registry = self.metrics.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # every worker's series, summed
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def post_feedback(self, request: web.Request) -> web.Response:
        """The answer to a POST, counted by status (every status, 500 included)."""
        try:
            response = await self._post(request)
        except RequestError as exc:
            response = self._refusal(exc)
        except web.HTTPException as exc:  # raised by aiohttp itself: answered as it says
            self._count(exc.status)
            raise
        except ConnectionError:  # the client went away mid-body: nobody to answer
            raise
        except Exception:  # a bug: a JSON 500, logged with its traceback, counted
            log.exception("%s %s: unexpected error", request.method, request.path)
            self.metrics.rejected.labels("internal_error").inc()
            payload = {"error": "internal_error", "message": "unexpected error; see the log"}
            response = web.json_response(payload, status=500)
        self._count(response.status)
        return response

    def _refusal(self, exc: RequestError) -> web.Response:
        self.metrics.rejected.labels(exc.reason).inc()
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        payload = {"error": exc.reason, "message": str(exc)}
        response = web.json_response(payload, status=exc.status, headers=headers)
        if exc.status in (408, 413):
            response.force_close()
        return response

    def _count(self, status: int) -> None:
        counter = self._by_status.get(status)
        if counter is None:
            counter = self._by_status[status] = self.metrics.requests.labels(str(status))
        counter.inc()

    async def _post(self, request: web.Request) -> web.Response:
        namespace, loop = request.match_info["namespace"], request.match_info["loop"]
        if not _NAME.match(namespace) or not _NAME.match(loop):
            raise RequestError(404, "unknown_loop", "namespace and loop must be Kubernetes names")
        verdict, client = self.tokens.check(request.headers.get("Authorization"), namespace, loop)
        if verdict == "unauthenticated":
            raise RequestError(401, "unauthenticated", "a valid bearer token is required")
        if verdict == "forbidden":
            raise RequestError(403, "forbidden", f"this token may not write to {namespace}/{loop}")
        if self.config.loops and f"{namespace}/{loop}" not in self.config.loops:
            raise RequestError(404, "unknown_loop", f"no FeedbackLoop {namespace}/{loop} here")
        # no Content-Type (aiohttp would say application/octet-stream): "", accepted
        given = request.content_type.lower() if "Content-Type" in request.headers else ""
        if given not in _CONTENT_TYPES:
            raise RequestError(415, "content_type", f"unsupported type {request.content_type}")
        length = request.content_length
        if length is not None and length > self.config.max_body_bytes:
            raise RequestError(413, "too_large", f"body over {self.config.max_body_bytes} bytes")
        if self.inflight_requests >= self.config.max_inflight:
            raise RequestError(429, "busy", "too many requests in flight", retry_after=1)
        self.inflight_requests += 1
        try:
            body = await self._body(request)
            return await self._accept(namespace, loop, body, client.name if client else "")
        finally:
            self.inflight_requests -= 1

    async def _body(self, request: web.Request) -> bytes:
        limit = self.config.max_body_bytes
        encoding = request.headers.get("Content-Encoding", "identity").lower().strip()
        if encoding not in ("identity", "gzip"):
            raise RequestError(415, "content_encoding", f"unsupported encoding {encoding}")
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS) if encoding == "gzip" else None
        if inflate is None and request.content.is_eof():  # all received: no wait, no timer
            body = request.content.read_nowait()
            if len(body) > limit:  # a chunked body (no Content-Length checked before)
                raise RequestError(413, "too_large", f"body over {limit} bytes")
            return body
        out = bytearray()
        try:
            async with asyncio.timeout(self.config.body_timeout):
                while True:
                    chunk = await request.content.read(_CHUNK)
                    if not chunk:
                        break
                    if inflate is not None:
                        chunk = inflate.decompress(chunk, limit + 1 - len(out))
                        if inflate.unconsumed_tail:
                            raise RequestError(413, "too_large", f"decompressed over {limit} B")
                    out += chunk
                    if len(out) > limit:
                        raise RequestError(413, "too_large", f"body over {limit} bytes")
        except TimeoutError as exc:
            raise RequestError(408, "timeout", "the body was not received in time") from exc
        except zlib.error as exc:
            raise RequestError(400, "bad_gzip", f"invalid gzip body: {exc}") from exc
        if inflate is not None and not inflate.eof:
            raise RequestError(400, "bad_gzip", "the gzip body is cut short")
        return bytes(out)

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
            raise RequestError(503, "store_error", "the store cannot be read", 5) from exc
        return writer

    async def _accept(self, namespace: str, loop: str, body: bytes, client: str) -> web.Response:
        config = self.config
        try:
            items = split_body(body, config.max_records)
        except BodyError as exc:
            raise RequestError(400, "bad_body", str(exc)) from exc
        received = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        valid, rejected = validate_batch(items, received, config.max_record_bytes)
        if rejected:
            self.metrics.rejected.labels("invalid_record").inc(len(rejected))
        size = sum(map(len, map(itemgetter(1), valid)))  # the bytes of the lines
        if size > config.max_pending_bytes:
            raise RequestError(413, "too_large", "the batch is larger than --max-pending-bytes")
        if valid and self.pending_bytes + size > config.max_pending_bytes:
            raise RequestError(429, "store_lagging", "the store lags behind", retry_after=1)
        if valid and time.monotonic() - self.last_failure < 1.0 and self.last_failure:
            raise RequestError(503, "store_error", "the store failed a moment ago", 1)
        accepted = duplicates = 0
        if valid:
            writer = await self._writer(namespace, loop)
            ticket = writer.submit(valid, size, time.monotonic())
            try:
                accepted, duplicates = await ticket.wait()
            except StoreUnavailable as exc:
                raise RequestError(503, "store_error", "commit failed; retry", 1) from exc
            writer.accepted.inc(accepted)
            writer.duplicates.inc(duplicates)
        log.debug(
            "%s/%s from %s: %d accepted, %d duplicates, %d rejected",
            namespace,
            loop,
            client,
            accepted,
            duplicates,
            len(rejected),
        )
        payload: dict[str, Any] = {"accepted": accepted, "duplicates": duplicates}
        if rejected:  # every one (at most --max-records), in the batch's order
            payload["rejected"] = [r.to_dict() for r in rejected]
        return web.Response(
            body=orjson.dumps(payload),
            status=400 if rejected else 200,
            content_type="application/json",
        )


async def serve(
    config: CollectorConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    access_log: bool = False,
    on_ready: Callable[[int], Awaitable[None] | None] | None = None,
    sock: socket.socket | None = None,
    supervisor_pipe: int | None = None,
) -> None:
    """Run the collector until SIGTERM or SIGINT, which stop it cleanly.

    ``sock``: a listening socket to accept on instead of binding ``host:port`` (a worker of
    :mod:`kubetune.collector.workers`); ``supervisor_pipe``: the read end of a pipe whose EOF
    means the supervisor is gone, upon which this process ends at once, as if killed with it.
    """
    service = CollectorService(config, TokenStore(config.tokens_file))
    runner = web.AppRunner(
        service.app(),
        auto_decompress=False,
        shutdown_timeout=10.0,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
    )
    await runner.setup()
    gc.freeze()  # the modules' objects: out of every collection (cheaper full collections)
    if sock is not None:
        site: web.BaseSite = web.SockSite(runner, sock)
    else:
        site = web.TCPSite(runner, host, port, backlog=256)
    await site.start()
    bound = _bound_port(runner, port)
    log.info("collector listening on %s:%d, store %s", host, bound, config.store)
    if on_ready is not None:
        result = on_ready(bound)
        if result is not None:
            await result
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, stop.set)
    if supervisor_pipe is not None:
        loop.add_reader(supervisor_pipe, _supervisor_gone)
    try:
        await stop.wait()  # SIGTERM: stop accepting, let in-flight requests finish their commit
        log.info("stopping: finishing the requests in flight")
    finally:
        await runner.cleanup()


def _bound_port(runner: web.AppRunner, port: int) -> int:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return port


def _supervisor_gone() -> None:
    log.error("the collector supervisor is gone: this worker ends")
    os._exit(3)
