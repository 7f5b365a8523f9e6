"""Kubernetes API calls of the controllers, through the official ``kubernetes`` client.

The few calls the controllers make (create children, patch status and promotion targets, delete
superseded Jobs and old cycles' resources, read a ConfigMap, a discovery document or the Pods of
a finished Job) go through one :class:`Api`: the client's ``ApiClient`` with the credentials of
:mod:`kubetune.controllers.credentials`, run in worker threads so the event loop never blocks.
:class:`Api` retries what a retry can fix (429 honouring ``Retry-After``, 5xx, dropped
connections and timeouts) with backoff, and logs in again once on a 401 (an expired exec-plugin
token). Errors the caller decides on are typed: :class:`NotFound`, :class:`Conflict`,
:class:`Unprocessable`, or :class:`APIError` with the HTTP status and the server's message.

kopf's own watches log in through the same loader (the registry's login handler).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kubernetes.client
import urllib3
from kubernetes.client.exceptions import ApiException

from kubetune.controllers.credentials import KubeAccess, Login, load
from kubetune.controllers.discovery import OWN_RESOURCES, ApiResource, Discovery

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
# Seconds to wait before each retry of a call a retry may fix.
RETRY_DELAYS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0, 4.0)
REQUEST_TIMEOUT = (10.0, 60.0)  # (connect, read) seconds
MAX_RETRY_AFTER = 30.0
RETRYABLE = frozenset({429, 500, 502, 503, 504})

logger = logging.getLogger(__name__)


class APIError(Exception):
    """The API server answered an error: ``status`` (HTTP), ``reason`` and its ``message``."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(APIError):
    """404: the object or its kind does not exist."""


class Conflict(APIError):
    """409: a stale resourceVersion, or the name is taken."""


class Unprocessable(APIError):
    """422: the server refused the object (or a JSON patch's ``test`` failed)."""


class Unreachable(APIError):
    """No answer from the API server (connection refused, reset, timed out)."""


_BY_STATUS: dict[int, type[APIError]] = {404: NotFound, 409: Conflict, 422: Unprocessable}


def _error(exc: ApiException) -> APIError:
    """The typed error of a client exception, with the server's Status message."""
    status = int(exc.status or 0)
    body: Any = exc.body
    message, reason = "", str(exc.reason or "")
    try:
        document = json.loads(body) if body else {}
    except (TypeError, ValueError):
        document = {}
    if isinstance(document, Mapping):
        message = str(document.get("message") or "")
        reason = str(document.get("reason") or reason)
    if not message:
        message = f"{status} {reason}".strip()
    return _BY_STATUS.get(status, APIError)(status, reason, message)


def _retry_after(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return min(float(value), MAX_RETRY_AFTER) if value is not None else None
    except ValueError:
        return None


class Api:
    """One authenticated connection to the API server, shared by every handler."""

    def __init__(
        self,
        access: KubeAccess = KubeAccess(),
        *,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        timeout: tuple[float, float] = REQUEST_TIMEOUT,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.access = access
        self.retry_delays = tuple(retry_delays)
        self.timeout = timeout
        self._sleep = sleep
        self._lock = threading.Lock()
        self._login: Login | None = None
        self._client: kubernetes.client.ApiClient | None = None

    @property
    def login(self) -> Login:
        """The credentials in use (logging in on first use)."""
        self._connect()
        assert self._login is not None
        return self._login

    def _connect(self, again: bool = False) -> kubernetes.client.ApiClient:
        with self._lock:
            if self._client is None or again:
                login = load(self.access)
                if self._client is not None:
                    self._client.close()
                # Retries are this class's (typed, logged once); urllib3's would print warnings.
                login.configuration.retries = False
                self._login = login
                self._client = kubernetes.client.ApiClient(login.configuration)
            return self._client

    def close(self) -> None:
        """Release the connection pool."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _once(
        self,
        client: kubernetes.client.ApiClient,
        method: str,
        path: str,
        body: Any,
        content_type: str | None,
    ) -> Any:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        return client.call_api(
            path,
            method,
            header_params=headers,
            body=body,
            response_types_map={200: "object", 201: "object", 202: "object"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _request_timeout=self.timeout,
        )

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str | None = None
    ) -> Any:
        """One API call (blocking), retried while a retry may help; the parsed JSON answer.

        Raises :class:`APIError` (or a subclass) when the server refuses, or keeps failing.
        """
        client = self._connect()
        relogged = False
        attempt = 0
        while True:
            try:
                return self._once(client, method, path, body, content_type)
            except ApiException as exc:
                status = int(exc.status or 0)
                if status == 401 and not relogged:
                    relogged = True
                    client = self._connect(again=True)
                    continue
                if status not in RETRYABLE or attempt >= len(self.retry_delays):
                    raise _error(exc) from None
                delay = _retry_after(exc) if status == 429 else None
                delay = self.retry_delays[attempt] if delay is None else delay
                logger.debug("%s %s: %s; retrying in %.1fs", method, path, status, delay)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                if attempt >= len(self.retry_delays):
                    why = str(exc).rsplit(": ", 1)[-1] or type(exc).__name__
                    raise Unreachable(0, "Unreachable", why) from None
                delay = self.retry_delays[attempt]
                logger.debug("%s %s: %s; retrying in %.1fs", method, path, exc, delay)
            attempt += 1
            self._sleep(delay)

    async def call(
        self, method: str, path: str, body: Any = None, *, content_type: str | None = None
    ) -> Any:
        """:meth:`request` in a worker thread."""
        return await asyncio.to_thread(self.request, method, path, body, content_type=content_type)


def object_url(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """The URL path of one of the operator's own objects (or of its collection)."""
    resource = OWN_RESOURCES.get((api_version, kind))
    if resource is None:
        raise ValueError(f"the operator does not manage {api_version} {kind}")
    return resource.url(namespace, name)


def url_of(obj: Mapping[str, Any]) -> str:
    """The URL path of one of the operator's own objects, given as a manifest or a reference."""
    meta = obj["metadata"]
    return object_url(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])


def describe(obj: Mapping[str, Any]) -> str:
    """``apps/v1 Deployment default/web``: an object as log lines and messages name it."""
    meta = obj.get("metadata") or {}
    where = f"{meta['namespace']}/" if meta.get("namespace") else ""
    return f"{obj.get('apiVersion')} {obj.get('kind')} {where}{meta.get('name')}"


class Client:
    """The API calls of the controllers, with a logger and the operator's discovery cache."""

    def __init__(
        self,
        api: Api,
        logger: logging.Logger | logging.LoggerAdapter[Any],  # kopf.Logger
        discovery: Discovery | None = None,
    ) -> None:
        self.api = api
        self.logger = logger
        self.discovery = discovery or Discovery()

    async def resource(self, api_version: str, kind: str) -> ApiResource:
        """How ``kind`` is served (API discovery for kinds the operator does not own).

        Raises :class:`~kubetune.controllers.discovery.UnknownKind` when it is not served.
        """
        return await self.discovery.resolve(api_version, kind, self.get)

    async def url(self, obj: Mapping[str, Any], *, collection: bool = False) -> str:
        """The URL path of any object given as a manifest or a reference (or its collection)."""
        meta = obj["metadata"]
        resource = await self.resource(str(obj["apiVersion"]), str(obj["kind"]))
        return resource.url(meta.get("namespace"), None if collection else meta["name"])

    async def get(self, url: str) -> dict[str, Any] | None:
        """The object at ``url``, or None when it does not exist."""
        try:
            found = await self.api.call("GET", url)
        except NotFound:
            return None
        return dict(found)

    async def list_objects(self, url: str, label_selector: str) -> list[dict[str, Any]]:
        """The objects of the collection at ``url`` that match ``label_selector``."""
        query = urllib.parse.urlencode({"labelSelector": label_selector})
        found = await self.api.call("GET", f"{url}?{query}")
        return [dict(item) for item in found.get("items") or []]

    async def create(self, obj: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create ``obj``; when it already exists, read it. Returns (object, created)."""
        url = await self.url(obj, collection=True)
        try:
            created = await self.api.call("POST", url, dict(obj))
            return dict(created), True
        except Conflict:
            existing = await self.get(await self.url(obj))
            if existing is None:  # deleted between the two calls: try again on the next pass
                raise
            return existing, False

    async def merge_patch(self, url: str, patch: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the object at ``url``; None when it no longer exists."""
        try:
            patched = await self.api.call("PATCH", url, dict(patch), content_type=MERGE_PATCH)
        except NotFound:
            return None
        return dict(patched)

    async def json_patch(self, url: str, ops: list[dict[str, Any]]) -> dict[str, Any] | None:
        """JSON-patch the object at ``url``; None when it no longer exists."""
        try:
            patched = await self.api.call("PATCH", url, ops, content_type=JSON_PATCH)
        except NotFound:
            return None
        return dict(patched)

    async def delete(self, obj: Mapping[str, Any], propagation: str = "Background") -> bool:
        """Delete an object (children go by garbage collection); False when already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            await self.api.call("DELETE", await self.url(obj), body)
        except NotFound:
            return False
        return True
