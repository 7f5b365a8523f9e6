"""Kubernetes API calls of the controllers, through kopf's own authenticated client.

kopf logs in once (its login handlers: in-cluster service account, kubeconfig, or a test's
emulator) and keeps the credentials in a vault that every task of the operator can reach. The
few calls the controllers make (create children, patch status and promotion targets, delete
superseded Jobs and old cycles' resources, read a ConfigMap, a discovery document or the Pods
of a finished Job) go through kopf's request function, so they share that session, its re-login
on 401 and its retries with backoff on 429 (honouring ``Retry-After``), 5xx and dropped
connections.

This is the only module that touches kopf's client internals.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

import kopf
from kopf._cogs.clients import api as kopf_api
from kopf._cogs.clients import errors as kopf_errors

from kubetune.controllers.discovery import OWN_RESOURCES, ApiResource, Discovery

APIError = kopf_errors.APIError
NotFound = kopf_errors.APINotFoundError
Conflict = kopf_errors.APIConflictError
Unprocessable = kopf_errors.APIUnprocessableEntityError

MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


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
    """The API calls of the controllers, with the operator's settings and a logger."""

    def __init__(
        self,
        settings: kopf.OperatorSettings,
        logger: logging.Logger,
        discovery: Discovery | None = None,
    ) -> None:
        self.settings = settings
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
            found = await kopf_api.get(url, settings=self.settings, logger=self.logger)
        except NotFound:
            return None
        return dict(found)

    async def list_objects(self, url: str, label_selector: str) -> list[dict[str, Any]]:
        """The objects of the collection at ``url`` that match ``label_selector``."""
        query = urllib.parse.urlencode({"labelSelector": label_selector})
        found = await kopf_api.get(f"{url}?{query}", settings=self.settings, logger=self.logger)
        return [dict(item) for item in found.get("items") or []]

    async def create(self, obj: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create ``obj``; when it already exists, read it. Returns (object, created)."""
        url = await self.url(obj, collection=True)
        try:
            created = await kopf_api.post(
                url, payload=dict(obj), settings=self.settings, logger=self.logger
            )
            return dict(created), True
        except Conflict:
            existing = await self.get(await self.url(obj))
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
            url = await self.url(obj)
            response = await kopf_api.request(
                "delete", url, payload=body, settings=self.settings, logger=self.logger
            )
        except NotFound:
            return False
        response.release()
        return True
