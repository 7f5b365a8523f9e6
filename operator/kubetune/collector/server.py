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
  nothing was written), 503 with ``Retry-After`` (the commit failed, or did not end within
  ``commit_timeout``: nothing acknowledged, retry), 500 (a bug: logged and counted like every
  answer).

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
import zlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST as METRICS_CONTENT_TYPE
from prometheus_client import CollectorRegistry, generate_latest, multiprocess

from kubetune.collector.auth import TokenStore
from kubetune.collector.commits import CommitRefused, Committer, LoopCommits
from kubetune.collector.committer import RemoteCommits
from kubetune.collector.config import CollectorConfig
from kubetune.collector.metrics import Metrics
from kubetune.collector.records import BodyError, read_batch

__all__ = ["CollectorConfig", "CollectorService", "Metrics", "serve"]
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


class RequestError(Exception):
    def __init__(self, status: int, reason: str, message: str, retry_after: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


class CollectorService:
    """The HTTP side: auth, limits, bodies, validation; ``committer`` makes records durable
    (:class:`LoopCommits` in this process, or a :class:`RemoteCommits` client of the
    supervisor's committer process)."""

    def __init__(
        self, config: CollectorConfig, tokens: TokenStore, committer: Committer | None = None
    ) -> None:
        self.config = config
        self.tokens = tokens
        self.metrics = Metrics()
        self.committer: Committer = committer or LoopCommits(config, self.metrics)
        self.inflight_requests = 0
        self._by_status: dict[int, Any] = {}  # status -> its series of metrics.requests
        self._by_loop: dict[tuple[str, str], tuple[Any, Any]] = {}  # (accepted, duplicates)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.config.max_body_bytes)
        app.router.add_post("/v1/feedback/{namespace}/{loop}", self.post_feedback)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/metrics", self.metrics_page)
        app.on_cleanup.append(self._cleanup)
        return app

    async def _cleanup(self, _app: web.Application) -> None:
        await self.committer.stop()

    async def healthz(self, _request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def readyz(self, _request: web.Request) -> web.Response:
        reason = await self.committer.not_ready()
        if reason:
            return web.json_response({"ready": False, "reason": reason}, status=503)
        return web.json_response({"ready": True})

    async def metrics_page(self, _request: web.Request) -> web.Response:
        self.committer.update_gauges()
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
            # the body and what is made of it are freed before the commit is awaited (a few
            # ms): memory that stays hot (measured: ~10% less CPU per request with commits)
            holder = [await self._body(request)]
            return await self._accept(namespace, loop, holder, client.name if client else "")
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

    async def _accept(
        self, namespace: str, loop: str, holder: list[bytes], client: str
    ) -> web.Response:
        """Validate the body (``holder``: its only reference, emptied once it is read) and
        commit its valid records."""
        config = self.config
        received = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        try:
            valid, rejected = read_batch(
                holder.pop(), config.max_records, received, config.max_record_bytes
            )
        except BodyError as exc:
            raise RequestError(400, "bad_body", str(exc)) from exc
        if rejected:
            self.metrics.rejected.labels("invalid_record").inc(len(rejected))
        if valid.size > config.max_pending_bytes:
            raise RequestError(413, "too_large", "the batch is larger than --max-pending-bytes")
        accepted = duplicates = 0
        if valid.ids:
            commit = self.committer.commit(namespace, loop, valid)
            del valid  # the lines are freed while the commit is awaited
            try:
                accepted, duplicates = await commit
            except CommitRefused as exc:
                raise RequestError(exc.status, exc.reason, str(exc), exc.retry_after) from exc
            series = self._by_loop.get((namespace, loop))
            if series is None:
                metrics = self.metrics
                series = self._by_loop[namespace, loop] = (
                    metrics.accepted.labels(namespace, loop),
                    metrics.duplicates.labels(namespace, loop),
                )
            series[0].inc(accepted)
            series[1].inc(duplicates)
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
    commit_address: str | None = None,
) -> None:
    """Run the collector until SIGTERM or SIGINT, which stop it cleanly.

    ``sock``: a listening socket to accept on instead of binding ``host:port`` (a worker of
    :mod:`kubetune.collector.workers`); ``supervisor_pipe``: the read end of a pipe whose EOF
    means the supervisor is gone, upon which this process ends at once, as if killed with it;
    ``commit_address``: the Unix socket of the supervisor's committer, which then makes the
    records durable (:mod:`kubetune.collector.committer`) instead of this process.
    """
    committer = RemoteCommits(commit_address, config) if commit_address else None
    service = CollectorService(config, TokenStore(config.tokens_file), committer)
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
