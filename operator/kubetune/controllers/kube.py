"""Kubernetes API calls of the controllers, through kopf's own authenticated client.

kopf logs in once (its login handlers: in-cluster service account, kubeconfig, or a test's
emulator) and keeps the credentials in a vault that every task of the operator can reach. The
few calls the controllers make (create children, patch status, delete superseded Jobs, read a
ConfigMap) go through kopf's request function, so they share that session, its re-login on 401
and its retries with backoff on 429 (honouring ``Retry-After``), 5xx and dropped connections.

This is the only module that touches kopf's client internals.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import errors as kopf_errors

from kubetune.api.common import API_VERSION
from kubetune.api.resources import KIND_INFO

APIError = kopf_errors.APIError
NotFound = kopf_errors.APINotFoundError
Conflict = kopf_errors.APIConflictError
Unprocessable = kopf_errors.APIUnprocessableEntityError

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}

# (apiVersion, kind) -> plural, for the objects the operator reads and writes.
PLURALS: dict[tuple[str, str], str] = {
    ("v1", "ConfigMap"): "configmaps",
    ("v1", "Service"): "services",
    ("v1", "Pod"): "pods",
    ("batch/v1", "Job"): "jobs",
    **{(API_VERSION, kind): info.plural for kind, info in KIND_INFO.items()},
}


def object_url(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """The URL path of an object (or of its collection when ``name`` is None)."""
    plural = PLURALS.get((api_version, kind))
    if plural is None:
        raise ValueError(f"the operator does not manage {api_version} {kind}")
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    url = f"{root}/namespaces/{namespace}/{plural}"
    return f"{url}/{name}" if name else url


def url_of(obj: Mapping[str, Any]) -> str:
    """The URL path of an object given as a manifest or a reference."""
    meta = obj["metadata"]
    return object_url(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])


class Client:
    """The API calls of the controllers, with the operator's settings and a logger."""

    def __init__(self, settings: kopf.OperatorSettings, logger: logging.Logger) -> None:
        self.settings = settings
        self.logger = logger

    async def get(self, url: str) -> dict[str, Any] | None:
        """The object at ``url``, or None when it does not exist."""
        try:
            found = await kopf_api.get(url, settings=self.settings, logger=self.logger)
        except NotFound:
            return None
        return dict(found)

    async def create(self, obj: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create ``obj``; when it already exists, read it. Returns (object, created)."""
        meta = obj["metadata"]
        url = object_url(obj["apiVersion"], obj["kind"], meta["namespace"])
        try:
            created = await kopf_api.post(
                url, payload=dict(obj), settings=self.settings, logger=self.logger
            )
            return dict(created), True
        except Conflict:
            existing = await self.get(url_of(obj))
            if existing is None:  # deleted between the two calls: try again on the next pass
                raise
            return existing, False

    async def merge_patch(self, url: str, patch: Mapping[str, Any]) -> dict[str, Any] | None:
        """Merge-patch the object at ``url``; None when it no longer exists."""
        try:
            patched = await kopf_api.patch(
                url,
                payload=dict(patch),
                headers=MERGE_PATCH,
                settings=self.settings,
                logger=self.logger,
            )
        except NotFound:
            return None
        return dict(patched)

    async def json_patch(self, url: str, ops: list[dict[str, Any]]) -> dict[str, Any] | None:
        """JSON-patch the object at ``url``; None when it no longer exists."""
        try:
            response = await kopf_api.request(
                "patch",
                url,
                payload=ops,
                headers=JSON_PATCH,
                settings=self.settings,
                logger=self.logger,
            )
        except NotFound:
            return None
        async with response:
            return dict(await response.json())

    async def delete(self, obj: Mapping[str, Any], propagation: str = "Background") -> bool:
        """Delete an object (children go by garbage collection); False when already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": propagation}
        try:
            response = await kopf_api.request(
                "delete", url_of(obj), payload=body, settings=self.settings, logger=self.logger
            )
        except NotFound:
            return False
        response.release()
        return True
