"""The collector's HTTP service (aiohttp): auth, limits, validation, group commit, metrics.

``POST /v1/feedback/{namespace}/{loop}`` takes one record, a JSON array or JSONL. The answer:

- 200 ``{"accepted", "duplicates"}``: every record is in a committed segment (or was already);
- 400 ``{"accepted", "duplicates", "rejected": [{index, id, errors: [{path, reason}]}]}``: the
  valid records of the batch *are* committed (a retry of the whole batch is safe: their ids
  are known), the others are listed; a body that cannot be read at all is rejected whole;
- 401 (no or unknown token), 403 (token not bound to this loop), 404 (unknown loop when
  ``--loop`` restricts them), 408 (body not received within ``body_timeout``), 413 (body or
  decompressed body over ``max_body_bytes``), 415 (content type), 429 with ``Retry-After``
  (too many requests in flight or the store lags: nothing was written), 503 with
  ``Retry-After`` (the commit failed: nothing acknowledged, retry).

Records of concurrent requests to one loop are committed together (group commit): a single
commit at a time per loop, the next one takes everything that arrived meanwhile, up to a
segment's size. Memory is bounded: at most ``max_inflight`` requests of at most
``max_body_bytes`` each, and the records waiting for a commit are counted in ``max_pending_bytes``
(over it: 429).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import signal
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from kubetune.collector.auth import TokenStore
from kubetune.collector.records import (
    BodyError,
    FieldError,
    Invalid,
    Valid,
    encode_line,
    split_body,
    validate,
)
from kubetune.collector.store import LoopStore, backend_for, loop_uri, writer_id

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


@dataclass
class CollectorConfig:
    """Settings of one collector process (``kubetune collector --help`` documents them)."""

    store: str
    tokens_file: Path | None = None
    loops: tuple[str, ...] = ()
    max_body_bytes: int = 8 << 20
    max_records: int = 10_000
    max_record_bytes: int = 1 << 20
    max_inflight: int = 64
    max_pending_bytes: int = 64 << 20
    body_timeout: float = 30.0
    segment_bytes: int = 1 << 20
    segment_seconds: float = 300.0
    retention_seconds: float = 7 * 86400.0
    writer: str = field(default_factory=writer_id)


class Metrics:
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
            "Time from a record's arrival to its durable commit.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.pending = Gauge(
            "kubetune_collector_pending_bytes",
            "Bytes of records waiting for a commit (store lag).",
            registry=self.registry,
        )
        self.lag = Gauge(
            "kubetune_collector_store_lag_seconds",
            "Age of the oldest record waiting for a commit.",
            registry=self.registry,
        )
        self.segments = Counter(
            "kubetune_collector_segment_commits",
            "Segment commits (temporary file, fsync, rename; one PUT on S3).",
            labels,
            registry=self.registry,
        )


@dataclass
class _Pending:
    record_id: str
    line: bytes
    since: float
    future: asyncio.Future[bool]


class LoopWriter:
    """Group commits of one loop: one commit at a time, each takes all that is pending."""

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
        self.pending: list[_Pending] = []
        self.inflight: dict[str, asyncio.Future[bool]] = {}
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
            self._task = asyncio.create_task(self._run(), name=f"commit {self.loop}")
            self.ready.set_result(None)
        await asyncio.shield(self.ready)

    def submit(self, record_id: str, line: bytes, now: float) -> asyncio.Future[bool] | None:
        """None when the id is already committed; else a future: True once written."""
        if record_id in self.store.ids:
            return None
        existing = self.inflight.get(record_id)
        if existing is not None:
            return existing
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.inflight[record_id] = future
        self.pending.append(_Pending(record_id, line, now, future))
        self.service.pending_bytes += len(line)
        self._wake.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                batch = self._take(self.store.segment_bytes)
                await self._commit(batch, sum(len(p.line) for p in batch))

    def _take(self, limit: int) -> list[_Pending]:
        size, count = 0, 0
        for item in self.pending:
            if count and size + len(item.line) > limit:
                break
            size += len(item.line)
            count += 1
        taken, self.pending = self.pending[:count], self.pending[count:]
        return taken

    async def _commit(self, batch: list[_Pending], size: int) -> None:
        metrics = self.service.metrics
        try:
            fresh = await asyncio.to_thread(
                self.store.commit, [(p.record_id, p.line) for p in batch]
            )
        except Exception as exc:
            log.error("%s/%s: commit failed: %s", self.namespace, self.loop, exc)
            self.service.last_failure = time.monotonic()
            self.store.mark_dirty()
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(StoreUnavailable(str(exc)))
                    item.future.exception()
            self._release(batch, size)
            return
        done = time.monotonic()
        written = 0
        for item, new in zip(batch, fresh, strict=True):
            metrics.commit.observe(done - item.since)
            written += len(item.line) if new else 0
            if not item.future.done():
                item.future.set_result(new)
        metrics.bytes.labels(self.namespace, self.loop).inc(written)
        if written:
            metrics.segments.labels(self.namespace, self.loop).inc()
        self._release(batch, size)

    def _release(self, batch: list[_Pending], size: int) -> None:
        for item in batch:
            if self.inflight.get(item.record_id) is item.future:
                del self.inflight[item.record_id]
        self.service.pending_bytes -= size

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

    async def metrics_page(self, _request: web.Request) -> web.Response:
        now = time.monotonic()
        oldest = [t for w in self.writers.values() if (t := w.oldest_pending()) is not None]
        self.metrics.lag.set(now - min(oldest) if oldest else 0.0)
        self.metrics.pending.set(self.pending_bytes)
        body = generate_latest(self.metrics.registry)
        return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})

    async def post_feedback(self, request: web.Request) -> web.Response:
        try:
            response = await self._post(request)
        except RequestError as exc:
            self.metrics.rejected.labels(exc.reason).inc()
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
            payload = {"error": exc.reason, "message": str(exc)}
            response = web.json_response(payload, status=exc.status, headers=headers)
            if exc.status in (408, 413):
                response.force_close()
        self.metrics.requests.labels(str(response.status)).inc()
        return response

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
        if request.content_type.lower() not in _CONTENT_TYPES:
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
        valid: list[tuple[str, bytes]] = []
        rejected: list[Invalid] = []
        for index, item in enumerate(items):
            outcome = validate(index, item, received)
            if isinstance(outcome, Valid):
                line = encode_line(outcome.line)
                if len(line) > config.max_record_bytes:
                    reason = f"record over {config.max_record_bytes} bytes"
                    outcome = Invalid(index, outcome.id, (FieldError("", reason),))
                else:
                    valid.append((outcome.id, line))
                    continue
            rejected.append(outcome)
        if rejected:
            self.metrics.rejected.labels("invalid_record").inc(len(rejected))
        size = sum(len(line) for _, line in valid)
        if size > config.max_pending_bytes:
            raise RequestError(413, "too_large", "the batch is larger than --max-pending-bytes")
        if valid and self.pending_bytes + size > config.max_pending_bytes:
            raise RequestError(429, "store_lagging", "the store lags behind", retry_after=1)
        if valid and time.monotonic() - self.last_failure < 1.0 and self.last_failure:
            raise RequestError(503, "store_error", "the store failed a moment ago", 1)
        accepted = duplicates = 0
        if valid:
            writer = await self._writer(namespace, loop)
            now = time.monotonic()
            waits = [writer.submit(record_id, line, now) for record_id, line in valid]
            pending = [w for w in waits if w is not None]
            duplicates = len(waits) - len(pending)
            try:
                results = await asyncio.shield(asyncio.gather(*pending))
            except StoreUnavailable as exc:
                raise RequestError(503, "store_error", "commit failed; retry", 1) from exc
            accepted = sum(results)
            duplicates += len(results) - accepted
            self.metrics.accepted.labels(namespace, loop).inc(accepted)
            self.metrics.duplicates.labels(namespace, loop).inc(duplicates)
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
        if rejected:
            payload["rejected"] = [r.to_dict() for r in rejected[:100]]
            payload["rejectedCount"] = len(rejected)
            return web.json_response(payload, status=400)
        return web.json_response(payload)


async def serve(
    config: CollectorConfig,
    host: str,
    port: int,
    access_log: bool = False,
    on_ready: Callable[[int], Awaitable[None] | None] | None = None,
) -> None:
    """Run the collector until SIGTERM or SIGINT, which stop it cleanly."""
    tokens = TokenStore(config.tokens_file)
    service = CollectorService(config, tokens)
    runner = web.AppRunner(
        service.app(),
        auto_decompress=False,
        shutdown_timeout=10.0,
        access_log=logging.getLogger("aiohttp.access") if access_log else None,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=256)
    await site.start()
    bound = port
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            bound = int(address[1])
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
    try:
        await stop.wait()  # SIGTERM: stop accepting, let in-flight requests finish their commit
        log.info("stopping: finishing the requests in flight")
    finally:
        await runner.cleanup()
