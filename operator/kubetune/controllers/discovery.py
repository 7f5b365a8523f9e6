"""Where the API server serves a kind: the operator's own table, else API discovery.

The operator creates, patches and deletes its own kinds (the kubetune resources, Jobs,
ConfigMaps, Services) by a fixed table. A FeedbackLoop's promotion patches an object of any
kind the user names (an ``apps/v1`` Deployment, a KServe InferenceService...): its plural and
scope come from API discovery (``GET /api/v1`` or ``GET /apis/GROUP/VERSION``), the resource
whose ``kind`` matches and whose name has no ``/`` (``deployments``, not ``deployments/scale``).
Found kinds are cached for the operator's lifetime; a kind that is not served is not cached, so
installing its CRD later is picked up by the next retry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kubetune.api.common import API_VERSION
from kubetune.api.kinds import KIND_INFO

Fetch = Callable[[str], Awaitable[Mapping[str, Any] | None]]


@dataclass(frozen=True)
class ApiResource:
    """How one kind is served: its plural (the URL segment) and whether it is namespaced."""

    api_version: str
    kind: str
    plural: str
    namespaced: bool = True

    def url(self, namespace: str | None, name: str | None = None) -> str:
        """The URL path of an object, or of the collection when ``name`` is None."""
        group_version = self.api_version
        root = f"/apis/{group_version}" if "/" in group_version else f"/api/{group_version}"
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.api_version} {self.kind} is namespaced: give a namespace")
            root = f"{root}/namespaces/{namespace}"
        url = f"{root}/{self.plural}"
        return f"{url}/{name}" if name else url


class UnknownKind(LookupError):
    """The API server does not serve this apiVersion and kind."""


def _own(api_version: str, kind: str, plural: str) -> tuple[tuple[str, str], ApiResource]:
    return (api_version, kind), ApiResource(api_version, kind, plural)


# The objects the operator itself reads and writes: no discovery needed.
OWN_RESOURCES: dict[tuple[str, str], ApiResource] = dict(
    [
        _own("v1", "ConfigMap", "configmaps"),
        _own("v1", "Service", "services"),
        _own("v1", "Pod", "pods"),
        _own("batch/v1", "Job", "jobs"),
        *(_own(API_VERSION, kind, info.plural) for kind, info in KIND_INFO.items()),
    ]
)


def discovery_url(api_version: str) -> str:
    """The discovery document of a group version: ``/api/v1`` or ``/apis/apps/v1``."""
    parts = api_version.split("/")
    if not api_version or len(parts) > 2 or not all(parts):
        raise ValueError(f"invalid apiVersion {api_version!r}: expected VERSION or GROUP/VERSION")
    return f"/apis/{api_version}" if len(parts) == 2 else f"/api/{api_version}"


def find_resource(
    api_version: str, kind: str, resource_list: Mapping[str, Any]
) -> ApiResource | None:
    """The kind's main resource in an APIResourceList (subresources have a '/' in the name)."""
    for item in resource_list.get("resources") or []:
        name = str(item.get("name") or "")
        if item.get("kind") == kind and name and "/" not in name:
            return ApiResource(api_version, kind, name, bool(item.get("namespaced", True)))
    return None


class Discovery:
    """Resolves (apiVersion, kind) to an :class:`ApiResource`, caching what it discovers."""

    def __init__(self) -> None:
        self._found: dict[tuple[str, str], ApiResource] = dict(OWN_RESOURCES)

    def known(self, api_version: str, kind: str) -> ApiResource | None:
        """The resource if it is the operator's own or was discovered before."""
        return self._found.get((api_version, kind))

    async def resolve(self, api_version: str, kind: str, fetch: Fetch) -> ApiResource:
        """The resource serving ``kind``; ``fetch(url)`` reads a discovery document (None: 404).

        Raises :class:`UnknownKind` when the group version or the kind is not served.
        """
        found = self.known(api_version, kind)
        if found is not None:
            return found
        document = await fetch(discovery_url(api_version))
        found = find_resource(api_version, kind, document) if document is not None else None
        if document is None:
            raise UnknownKind(f"the API server does not serve {api_version} (for kind {kind})")
        if found is None:
            raise UnknownKind(f"the API server serves no kind {kind} in {api_version}")
        self._found[(api_version, kind)] = found
        return found
