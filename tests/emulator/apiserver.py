"""
A kube-apiserver emulator for tests, built on :class:`kmock.KubernetesEmulator`.

kmock provides the HTTP plumbing (an aiohttp server on 127.0.0.1, API discovery,
the request DSL for ad-hoc endpoints). :class:`ApiServer` replaces kmock's
simplistic object semantics with the ones that a kopf operator relies on:

* ``metadata.uid``, ``creationTimestamp``, ``generation`` and a global, monotonic
  ``resourceVersion``; 409 ``Conflict`` on stale ``resourceVersion``,
  409 ``AlreadyExists`` on duplicate names, ``generateName``, 201 on create;
* ``generation`` bumps only on changes outside ``metadata`` (and ``status``
  where the status subresource exists); no-op writes change nothing;
* a real ``status`` subresource: main-resource writes keep the stored status,
  ``/status`` writes change only the status;
* merge-patch, JSON-patch (with the ``test`` op answered 422 when failed, as kopf
  expects), strategic-merge-patch for built-in kinds (415 for custom resources, as the
  real server), and an approximation of server-side apply (``application/apply-patch+yaml``);
* label & field selectors on list/watch (field labels checked per kind, 400 for the
  unsupported ones), ``limit``/``continue`` pagination, ``dryRun=All``;
* watch streams resuming from any ``resourceVersion`` (the full history is
  kept), ``sendInitialEvents`` bookmarks, ``timeoutSeconds``, synthetic
  ADDED/DELETED events when an object enters/leaves a selector;
* finalizers (``deletionTimestamp`` first, removal when the finalizers are gone),
  background garbage collection through ``ownerReferences``, namespace deletion
  removing the namespace's objects, CRD deletion removing its custom resources;
* admission as the real server does it, on every request (and on direct writes with
  ``admit=True``): the namespace must exist; **custom resources** are pruned, defaulted
  and validated against their CRD (structural schema & CEL rules, see
  :mod:`tests.emulator.crd_admission`); **built-in kinds** are decoded against
  Kubernetes' own schemas (400 on wrong types, unknown fields dropped with a warning or
  refused with ``fieldValidation=Strict``), defaulted and validated (422, see
  :mod:`tests.emulator.builtins`); plus an optional ``admission`` hook (a toy webhook);
  every refused write is kept in :attr:`ApiServer.rejections`;
* what ``kubectl`` needs: ``/version``, discovery, ``/openapi/v3`` (with the
  ``fieldValidation`` parameter, so kubectl validates through the server) and
  ``/openapi/v2``, server-side printing (``meta.k8s.io/v1`` Tables with the CRDs'
  printer columns), CRDs created through the API are served at once;
* bearer-token authentication (401 with a ``Status`` body) when a ``token`` is set;
* fault injection (:class:`Faults`): canned error responses, dropped watches,
  expired resource versions (410 Gone), watch streams that lag behind the store.

All state lives in one event loop; the ``ApiServer.*_object`` methods are
synchronous and must run in that loop (use :meth:`ApiServer.call` from other
threads, or the thread-safe :class:`tests.emulator.harness.Emulator` handle).
This package is an independent test oracle: nothing here imports ``kubetune``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import random
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import rendering
from multidict import CIMultiDict

from tests.emulator import builtins, openapi, protobuf, strategic, tables
from tests.emulator.apivalidation import FieldError
from tests.emulator.crd_admission import CrdAdmission, CrdAdmissionRegistry
from tests.emulator.k8sutils import (
    ApiError,
    FieldSelector,
    JsonDict,
    JsonPatchError,
    LabelSelector,
    json_patch,
    merge_patch,
    now_rfc3339,
    without,
)
from tests.emulator.resources import (
    BUILTIN_RESOURCES,
    ResourceRegistry,
    ResourceSpec,
    specs_from_crd,
)

T = TypeVar("T")
logger = logging.getLogger(__name__)

#: ``admission(new_object, old_object_or_None) -> list of error strings`` (empty = admitted).
AdmissionHook = Callable[[JsonDict, JsonDict | None], list[str]]

#: The Kubernetes version the emulator claims to be (``/version``), as its schemas.
KUBE_VERSION = builtins.K8S_VERSION

ObjectKey = tuple[tuple[str, str], str | None, str]  # ((group, plural), namespace, name)

MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
_HEALTH_PATHS = ("/healthz", "/livez", "/readyz")
_WRITES = ("create", "update", "patch")


@dataclass(frozen=True)
class WriteOptions:
    """Query parameters of a write: ``fieldValidation`` (Ignore/Warn/Strict), ``dryRun``."""

    field_validation: str = "Warn"
    dry_run: bool = False


def _field_validation(query: Mapping[str, str]) -> str:
    value = query.get("fieldValidation") or "Warn"
    if value not in ("Ignore", "Warn", "Strict"):
        raise ApiError(
            400,
            "BadRequest",
            f"fieldValidation must be one of Ignore, Warn, or Strict, got {value!r}",
        )
    return value


def _warning_header(text: str) -> str:
    """A ``Warning`` response header as kube-apiserver sends it (RFC 7234, code 299)."""
    return '299 - "' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


#: Field labels that kube-apiserver maps to other paths of the object.
_FIELD_ALIASES: dict[tuple[str, str], dict[str, str]] = {
    ("", "events"): {"source": "source.component"},
    ("batch", "jobs"): {"status.successful": "status.succeeded"},
}

#: Field labels that kube-apiserver supports in ``fieldSelector`` (besides metadata.name
#: and metadata.namespace, which every kind supports), per (group, plural).
FIELD_LABELS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "events"): (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    ("events.k8s.io", "events"): (
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "regarding.apiVersion",
        "regarding.resourceVersion",
        "regarding.fieldPath",
        "reason",
        "reportingController",
        "type",
    ),
    ("", "pods"): (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.podIPs",
        "status.nominatedNodeName",
    ),
    ("batch", "jobs"): ("status.successful",),
    ("", "secrets"): ("type",),
    ("", "namespaces"): ("status.phase",),
    ("", "services"): ("spec.clusterIP", "spec.type"),
    ("", "nodes"): ("spec.unschedulable",),
    ("apps", "replicasets"): ("status.replicas",),
}

_SYSTEM_META = (
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
)
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # as in k8s.io/apimachinery/pkg/util/rand


# --------------------------------------------------------------------------------------------------
# Routing & requests
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """A parsed resource URL: ``/apis/{group}/{version}/namespaces/{ns}/{plural}/{name}/{sub}``."""

    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None

    @classmethod
    def parse(cls, path: str) -> Route | None:
        """Parse a resource path; ``None`` for non-resource paths (discovery etc.)."""
        segs = [s for s in path.split("/") if s]
        if len(segs) >= 2 and segs[0] == "api":
            group, version, rest = "", segs[1], segs[2:]
        elif len(segs) >= 3 and segs[0] == "apis":
            group, version, rest = segs[1], segs[2], segs[3:]
        else:
            return None
        if not rest:
            return None
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else None
        subresource = "/".join(rest[2:]) or None
        return cls(group, version, plural, namespace, name, subresource)


@dataclass(frozen=True)
class RequestRecord:
    """A resource request as seen by the emulator (for assertions in tests)."""

    method: str
    verb: str
    path: str
    query: Mapping[str, str]
    body: bytes
    resource: str  # e.g. "widgets.kubetune.dev", "configmaps"
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def data(self) -> Any:
        return json.loads(self.body) if self.body else None


def _verb(method: str, route: Route, query: Mapping[str, str]) -> str:
    method = method.upper()
    if method == "GET":
        if query.get("watch") in ("true", "1"):
            return "watch"
        return "get" if route.name else "list"
    if method == "POST" and route.name is None:
        return "create"
    if method == "PUT" and route.name is not None:
        return "update"
    if method == "PATCH" and route.name is not None:
        return "patch"
    if method == "DELETE":
        return "delete" if route.name else "deletecollection"
    raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on {route}")


# --------------------------------------------------------------------------------------------------
# Watches & events
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEvent:
    """One change in the store; the history of these serves watch resumption."""

    rv: int
    store_key: tuple[str, str]
    type: str  # ADDED, MODIFIED, DELETED
    old: JsonDict | None
    new: JsonDict


_DROP_GRACEFULLY = "graceful"
_DROP_ABRUPTLY = "abrupt"


@dataclass(eq=False)
class Watch:
    """One active watch-stream with its filters and a queue of pending events."""

    spec: ResourceSpec
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector
    queue: asyncio.Queue[JsonDict | str] = field(default_factory=asyncio.Queue)
    transform: Callable[[JsonDict], JsonDict] | None = None  # e.g. into a Table

    def show(self, obj: JsonDict) -> JsonDict:
        return self.transform(obj) if self.transform is not None else obj

    def _relevant(self, obj: JsonDict | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.labels.matches(obj) and self.fields.matches(obj)

    def translate(self, event: StoredEvent) -> JsonDict | None:
        """The event as this watcher sees it (objects entering/leaving the selectors)."""
        if event.store_key != self.spec.store_key:
            return None
        was, now = self._relevant(event.old), self._relevant(event.new)
        if event.type == "MODIFIED":
            kind = "MODIFIED" if was and now else "ADDED" if now else "DELETED" if was else None
        else:
            kind = event.type if now else None
        if kind is None:
            return None
        return {"type": kind, "object": self.show(render(self.spec, event.new))}


def render(spec: ResourceSpec, obj: JsonDict) -> JsonDict:
    """The stored object as served for a specific resource version (apiVersion & kind)."""
    rest = copy.deepcopy(without(obj, "apiVersion", "kind"))
    return {"apiVersion": spec.api_version, "kind": spec.kind, **rest}


# --------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------

_FAULT_REASONS = {
    400: "BadRequest",
    403: "Forbidden",
    404: "NotFound",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


@dataclass
class Fault:
    """An injected failure: the next ``remaining`` matching requests get this error."""

    verb: str | None  # HTTP method (GET/POST/PUT/PATCH/DELETE) or verb (list/watch/...); None=any
    store_key: tuple[str, str] | None  # None = any resource
    code: int
    remaining: int
    name: str | None = None
    subresource: str | None = None
    reason: str = ""
    message: str = ""
    retry_after: int | None = None
    hits: int = 0

    def matches(self, method: str, verb: str, spec: ResourceSpec, route: Route) -> bool:
        return (
            self.remaining > 0
            and (self.verb is None or self.verb.upper() in (method.upper(), verb.upper()))
            and (self.store_key is None or self.store_key == spec.store_key)
            and (self.name is None or self.name == route.name)
            and (self.subresource is None or self.subresource == (route.subresource or ""))
        )

    def error(self, spec: ResourceSpec, name: str | None) -> ApiError:
        reason = self.reason or _FAULT_REASONS.get(self.code, "InternalError")
        message = self.message or f"injected fault: {self.code} {reason}"
        if self.code == 409 and not self.message:
            message = (
                f'Operation cannot be fulfilled on {spec.group_resource} "{name}": the object'
                " has been modified; please apply your changes to the latest version and try again"
            )
        headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}
        details: JsonDict = {"name": name or "", "group": spec.group, "kind": spec.plural}
        if self.retry_after is not None:
            details["retryAfterSeconds"] = self.retry_after
        return ApiError(self.code, reason, message, details=details, headers=headers)


class Faults:
    """
    Fault injection for tests (thread-safe).

    Examples::

        emu.faults.fail('PATCH', 'widgets', code=409)         # the next PATCH of any widget
        emu.faults.fail('patch', 'widgets', code=422, count=2, subresource='status')
        emu.faults.throttle('POST', 'configmaps', retry_after=1)  # 429 + Retry-After
        emu.faults.server_error('list', 'jobs.batch')          # 500
        emu.faults.drop_watches('widgets')                     # end the active watch streams
        emu.faults.expire_resource_versions()                  # watches from older RVs: 410 Gone
        emu.faults.hold_watches('pods')                        # watch events lag until...
        emu.faults.release_watches()                           # ...they are delivered
    """

    def __init__(self, server: ApiServer) -> None:
        self._server = server
        self._lock = threading.Lock()
        self.rules: list[Fault] = []

    def fail(
        self,
        verb: str | None = None,
        resource: str | None = None,
        *,
        code: int = 500,
        count: int = 1,
        name: str | None = None,
        subresource: str | None = None,
        reason: str = "",
        message: str = "",
        retry_after: int | None = None,
    ) -> Fault:
        """
        Answer the next ``count`` requests matching the criteria with an error ``code``.

        ``verb`` is an HTTP method (``PATCH``) or a Kubernetes verb (``list``, ``watch``,
        ``create``, ``update``, ``patch``, ``delete``, ``get``); ``None`` matches all.
        ``resource`` is any name accepted by :meth:`ResourceRegistry.resolve`.
        ``subresource=''`` matches only the main resource, ``'status'`` only ``/status``.
        """
        store_key = self._server.registry.resolve(resource).store_key if resource else None
        rule = Fault(verb, store_key, code, count, name, subresource, reason, message, retry_after)
        with self._lock:
            self.rules.append(rule)
        return rule

    def conflict(self, verb: str | None = None, resource: str | None = None, **kw: Any) -> Fault:
        """409 Conflict, as if the object were modified concurrently."""
        return self.fail(verb, resource, code=409, **kw)

    def invalid(self, verb: str | None = None, resource: str | None = None, **kw: Any) -> Fault:
        """422 Invalid."""
        return self.fail(verb, resource, code=422, **kw)

    def throttle(
        self,
        verb: str | None = None,
        resource: str | None = None,
        *,
        retry_after: int = 1,
        **kw: Any,
    ) -> Fault:
        """429 TooManyRequests with a ``Retry-After`` header (seconds)."""
        return self.fail(verb, resource, code=429, retry_after=retry_after, **kw)

    def server_error(
        self, verb: str | None = None, resource: str | None = None, **kw: Any
    ) -> Fault:
        """500 InternalError."""
        return self.fail(verb, resource, code=500, **kw)

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def drop_watches(self, resource: str | None = None, *, abrupt: bool = False) -> int:
        """
        Close the active watch-streams (of a resource, or all); return how many were closed.

        Graceful (default): the stream ends normally, as on a server-side timeout.
        Abrupt: the TCP connection is closed mid-stream (the client sees a payload error).
        """
        store_key = self._server.registry.resolve(resource).store_key if resource else None
        return self._server.call(lambda: self._server.drop_watches(store_key, abrupt=abrupt))

    def hold_watches(self, resource: str) -> None:
        """Stop delivering a resource's events to its watch streams (a lagging watch); writes
        and reads still see every change. :meth:`release_watches` delivers what was held."""
        store_key = self._server.registry.resolve(resource).store_key
        self._server.call(lambda: self._server.held.setdefault(store_key, []))

    def release_watches(self, resource: str | None = None) -> None:
        """Deliver the held events (of a resource, or of all) and stop holding them."""
        store_key = self._server.registry.resolve(resource).store_key if resource else None
        self._server.call(lambda: self._server.release_held(store_key))

    def expire_resource_versions(self) -> None:
        """Make all current resourceVersions too old: new watches from them get 410 Gone."""
        self._server.call(self._server.expire_history)

    def take(self, method: str, verb: str, spec: ResourceSpec, route: Route) -> Fault | None:
        with self._lock:
            for rule in self.rules:
                if rule.matches(method, verb, spec, route):
                    rule.remaining -= 1
                    rule.hits += 1
                    return rule
        return None


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


def _initial_status(spec: ResourceSpec) -> JsonDict | None:
    """The status that kube-apiserver sets on create when the status subresource exists."""
    match (spec.group, spec.plural):
        case ("", "pods"):
            return {"phase": "Pending", "qosClass": "BestEffort"}
        case ("", "namespaces"):
            return {"phase": "Active"}
        case ("batch", "jobs"):
            return {}
        case ("apiextensions.k8s.io", "customresourcedefinitions"):
            return {"conditions": [{"type": "Established", "status": "True"}]}
    return None


def _default_job(obj: JsonDict) -> None:
    """The defaulting & selector generation of batch/v1 Jobs (as the API server does it)."""
    spec = obj.setdefault("spec", {})
    uid = obj["metadata"]["uid"]
    name = obj["metadata"]["name"]
    for key, value in (
        ("backoffLimit", 6),
        ("completions", 1),
        ("parallelism", 1),
        ("suspend", False),
        ("completionMode", "NonIndexed"),
        ("manualSelector", None),
    ):
        if value is not None:
            spec.setdefault(key, value)
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
        meta = spec.setdefault("template", {}).setdefault("metadata", {})
        meta.setdefault("labels", {}).update(
            {
                "batch.kubernetes.io/controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "controller-uid": uid,
                "job-name": name,
            }
        )
    spec.setdefault("template", {}).setdefault("spec", {})
    # No restartPolicy default here: the pod-spec defaulting makes it "Always", which a Job
    # refuses (422) -- as kube-apiserver does (see tests.emulator.builtins).


@dataclass(frozen=True)
class Rejection:
    """A write that the emulator refused (400/404/415/422), with the request that caused it."""

    request: RequestRecord | None
    code: int
    reason: str
    message: str
    resource: str
    name: str

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesEmulator):
    """
    kmock's KubernetesEmulator with kube-apiserver semantics (see the module docstring).

    Resource URLs are served from :attr:`store` (not from kmock's ``objects``) and
    logged in :attr:`request_log` (not in kmock's ``requests``); other paths go
    to kmock: discovery, ``/version``, and any DSL reactions (``server['get /x'] << b''``).
    Writes are admitted as by kube-apiserver (see the module docstring): custom resources
    against their CRD (``validate_crds``), built-in kinds against Kubernetes' schemas and
    validation (``validate_builtins``); both are on by default. The ``admission`` hook is
    called in addition for creations & updates (main resource and ``/status``) of
    resources in ``admission_groups``. Direct writes with ``admit=False`` skip all of it.
    Every refused write is appended to :attr:`rejections`, every warning (such as an
    unknown field dropped from a request) to :attr:`warning_log`. Unexpected exceptions become
    500s and are kept in :attr:`server_errors` (assert it is empty to catch emulator bugs).
    With ``token`` set, requests without ``Authorization: Bearer <token>`` get a 401.

    Usually started through :func:`tests.emulator.start_emulator`, but also usable
    directly in async tests within the same event loop::

        async with ApiServer(crds=[crd]) as api, kmock.Server(api) as srv:
            await srv.client.get('/api/v1/namespaces/default/pods')
    """

    crds: Sequence[Mapping[str, Any]] = ()
    admission: AdmissionHook | None = None
    admission_groups: frozenset[str] = frozenset({"kubetune.dev"})
    namespaces: Sequence[str] = ("default", "kube-system")
    seed: int = 0
    validate_crds: bool = True
    validate_builtins: bool = True
    token: str | None = None

    registry: ResourceRegistry = attrs.field(init=False, factory=ResourceRegistry)
    faults: Faults = attrs.field(init=False)
    request_log: list[RequestRecord] = attrs.field(init=False, factory=list)
    server_errors: list[Exception] = attrs.field(init=False, factory=list)
    rejections: list[Rejection] = attrs.field(init=False, factory=list)
    #: The warnings sent (e.g. ``unknown field "spec.x"``: a field the server dropped).
    warning_log: list[tuple[RequestRecord, str]] = attrs.field(init=False, factory=list)
    store: dict[ObjectKey, JsonDict] = attrs.field(init=False, factory=dict)
    history: list[StoredEvent] = attrs.field(init=False, factory=list)
    watches: set[Watch] = attrs.field(init=False, factory=set)
    resource_version: int = attrs.field(init=False, default=1000)
    expired_before: int = attrs.field(init=False, default=0)
    held: dict[tuple[str, str], list[StoredEvent]] = attrs.field(init=False, factory=dict)
    rng: random.Random = attrs.field(init=False, factory=random.Random)
    loop: asyncio.AbstractEventLoop | None = attrs.field(init=False, default=None)
    loop_thread: int | None = attrs.field(init=False, default=None)
    crd_admission: CrdAdmissionRegistry = attrs.field(init=False, factory=CrdAdmissionRegistry)
    warnings: list[str] = attrs.field(init=False, factory=list)  # of the request being served
    applied: dict[tuple[ObjectKey, str], JsonDict] = attrs.field(init=False, factory=dict)
    _openapi: dict[str, JsonDict] | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.rng.seed(self.seed)
        self.faults = Faults(self)
        self._serve_specs(BUILTIN_RESOURCES)
        crd_spec = self.registry.resolve("customresourcedefinitions")
        for crd in self.crds:
            self.create_object(crd_spec, None, dict(crd), admit=False)
        ns_spec = self.registry.resolve("namespaces")
        for namespace in self.namespaces:
            self.create_object(ns_spec, None, {"metadata": {"name": namespace}}, admit=False)

    def _serve_specs(self, specs: Sequence[ResourceSpec]) -> None:
        self.registry.add(specs)
        for spec in specs:
            key = kmock.resource(spec.group, spec.version, spec.plural)
            self.resources[key] = kmock.ResourceInfo(
                namespaced=spec.namespaced,
                kind=spec.kind,
                singular=spec.singular,
                verbs=set(spec.verbs),
                shortnames=set(spec.short_names),
                categories=set(spec.categories),
                subresources={"status"} if spec.status_subresource else set(),
            )
        self._openapi = None

    def register_crd(self, crd: Mapping[str, Any]) -> list[ResourceSpec]:
        """Serve the resources of a CRD (as when the CRD becomes Established)."""
        specs = specs_from_crd(crd)
        stale = (
            [s for s in self.registry if s.store_key == specs[0].store_key and s not in specs]
            if specs
            else []
        )
        self._unserve(stale)
        self._serve_specs(specs)
        self.crd_admission.add(crd)
        return specs

    def _unserve(self, specs: Sequence[ResourceSpec]) -> None:
        for spec in specs:
            self.registry.specs = [s for s in self.registry.specs if s != spec]
            key = kmock.resource(spec.group, spec.version, spec.plural)
            with contextlib.suppress(KeyError):
                del self.resources[key]
        self._openapi = None

    def _crd_removed(self, crd: Mapping[str, Any]) -> None:
        """Stop serving a deleted CRD's resources and delete its custom resources."""
        group = crd["spec"]["group"]
        plural = crd["spec"]["names"]["plural"]
        specs = [s for s in self.registry if s.store_key == (group, plural)]
        for key in [k for k in self.store if k[0] == (group, plural)]:
            obj = self.store.get(key)
            if obj is not None and specs:
                self._remove(specs[0], key, obj, "Background")
        self._unserve(specs)
        self.crd_admission.by_kind.pop((group, crd["spec"]["names"]["kind"]), None)

    # ---------------------------------------------------------------------------------------------
    # Threading

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Remember the loop (and its thread) that owns the state; see :meth:`call`."""
        self.loop = loop or asyncio.get_running_loop()
        self.loop_thread = threading.get_ident()

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run a synchronous function in the server's loop (directly if already there)."""
        loop = self.loop
        if loop is None or self.loop_thread == threading.get_ident() or not loop.is_running():
            return fn()

        async def _run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(_run(), loop).result(timeout=timeout)

    # ---------------------------------------------------------------------------------------------
    # Discovery (deterministic preferred versions, 404 for unserved versions; the rest is kmock's)

    async def _serve_apis(self, request: rendering.Request) -> rendering.Payload:
        groups: dict[str, list[ResourceSpec]] = {}
        for spec in self.registry:
            if spec.group:
                groups.setdefault(spec.group, []).append(spec)
        return {
            "apiVersion": "v1",
            "kind": "APIGroupList",
            "groups": [self._api_group(group, specs) for group, specs in sorted(groups.items())],
        }

    async def _serve_group(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        specs = [s for s in self.registry if s.group == request.resource.group and s.group]
        if not specs:
            raise kmock.KubernetesResourceNotFoundError()
        return self._api_group(request.resource.group or "", specs)

    async def _serve_version(self, request: rendering.Request) -> rendering.Payload:
        assert request.resource is not None
        group, version = request.resource.group or "", request.resource.version
        if not any((s.group, s.version) == (group, version) for s in self.registry):
            raise kmock.KubernetesResourceNotFoundError()  # e.g. /api/v2: not served
        result = await super()._serve_version(request)
        assert isinstance(result, dict)
        result["groupVersion"] = result["groupVersion"].lstrip("/")  # "/v1" -> "v1" for core
        for item in result.get("resources", []):
            item["verbs"] = sorted(item.get("verbs", []))
            if "/" in item["name"]:  # a subresource: no names or categories of its own
                item.update(singularName="", shortNames=[], categories=[])
                item["verbs"] = ["get", "patch", "update"]
        result["resources"].sort(key=lambda item: item["name"])
        return result

    @staticmethod
    def _api_group(group: str, specs: list[ResourceSpec]) -> JsonDict:
        versions = list(dict.fromkeys(s.version for s in specs))
        preferred = next((s.version for s in specs if s.preferred), versions[0])
        return {
            "apiVersion": "v1",
            "kind": "APIGroup",
            "name": group,
            "preferredVersion": {"groupVersion": f"{group}/{preferred}", "version": preferred},
            "versions": [{"groupVersion": f"{group}/{v}", "version": v} for v in versions],
        }

    # ---------------------------------------------------------------------------------------------
    # HTTP entry point

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if self.loop is None:
            self.attach_loop()
        path = raw_request.path
        if path in _HEALTH_PATHS:
            return aiohttp.web.Response(text="ok")
        if self.token is not None and not self._authenticated(raw_request):
            error = ApiError(401, "Unauthorized", "Unauthorized")
            return aiohttp.web.json_response(error.as_status(), status=401)
        if path == "/version":
            return aiohttp.web.json_response(self.version_info())
        if path == "/openapi/v2" or path.startswith("/openapi/v3"):
            return self._serve_openapi(raw_request)
        route = Route.parse(path)
        spec = self.registry.find(route.group, route.version, route.plural) if route else None
        if route is None:
            return await super().__call__(raw_request)  # discovery & kmock's DSL reactions
        if spec is None:  # e.g. authorization.k8s.io reviews: not served
            error = ApiError(404, "NotFound", "the server could not find the requested resource")
            return aiohttp.web.json_response(error.as_status(), status=404)

        body = await raw_request.read()
        record: RequestRecord | None = None
        self.warnings = []
        try:
            verb = _verb(raw_request.method, route, raw_request.query)
            record = RequestRecord(
                method=raw_request.method,
                verb=verb,
                path=raw_request.path,
                query=dict(raw_request.query),
                body=body,
                resource=spec.group_resource,
                namespace=route.namespace,
                name=route.name,
                subresource=route.subresource,
            )
            self.request_log.append(record)
            fault = self.faults.take(raw_request.method, verb, spec, route)
            if fault is not None:
                raise fault.error(spec, route.name).injected()
            response = await self._dispatch(raw_request, spec, route, verb, body)
            for warning in self.warnings:
                response.headers.add("Warning", _warning_header(warning))
                self.warning_log.append((record, warning))
            return response
        except ApiError as e:
            refused = e.code in (400, 404, 415, 422) or e.reason == "Forbidden"
            refused = refused and not e.message.startswith("testing value")  # a JSON-patch race
            if record is not None and record.verb in _WRITES and refused and not e.is_injected:
                self._reject(record, spec, e)
            headers: CIMultiDict[str] = CIMultiDict(e.headers)
            for warning in self.warnings:
                headers.add("Warning", _warning_header(warning))
            return aiohttp.web.json_response(e.as_status(), status=e.code, headers=headers)
        except Exception as e:  # a bug in the emulator or in the admission hook
            logger.exception("The API emulator failed to serve %s %s", raw_request.method, route)
            self.server_errors.append(e)
            error = ApiError(500, "InternalError", f"{e!r}\n{traceback.format_exc()}")
            return aiohttp.web.json_response(error.as_status(), status=500)
        finally:
            self.warnings = []

    def _reject(self, record: RequestRecord, spec: ResourceSpec, error: ApiError) -> None:
        name = record.name or ""
        if not name:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                name = str((record.data.get("metadata") or {}).get("name") or "")
        rejection = Rejection(
            record, error.code, error.reason, error.message, spec.group_resource, name
        )
        self.rejections.append(rejection)
        logger.warning("kube-api-emulator refused %s %s: %s", record.method, record.path, rejection)

    def _authenticated(self, raw_request: aiohttp.web.BaseRequest) -> bool:
        header = raw_request.headers.get("Authorization", "")
        scheme, _, credentials = header.partition(" ")
        return scheme.lower() == "bearer" and credentials.strip() == self.token

    @staticmethod
    def version_info() -> JsonDict:
        """``/version``: the Kubernetes version whose schemas and semantics are emulated."""
        major, minor, *_ = KUBE_VERSION.split(".")
        return {
            "major": major,
            "minor": minor,
            "gitVersion": f"v{KUBE_VERSION}",
            "gitCommit": "kube-api-emulator",
            "gitTreeState": "clean",
            "buildDate": "2024-12-11T00:00:00Z",
            "goVersion": "go1.23.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    # ---------------------------------------------------------------------------------------------
    # OpenAPI

    def openapi_documents(self) -> dict[str, JsonDict]:
        """The OpenAPI v3 documents by group-version path (``apis/batch/v1``, ``api/v1``)."""
        if self._openapi is None:
            crd_schemas: dict[tuple[str, str], dict[str, JsonDict]] = {}
            for admission in self.crd_admission:
                for version, schema in admission.schemas.items():
                    crd_schemas.setdefault((admission.group, version), {})[admission.kind] = schema
            by_gv: dict[tuple[str, str], list[ResourceSpec]] = {}
            for spec in self.registry:
                by_gv.setdefault((spec.group, spec.version), []).append(spec)
            documents = {}
            for (group, version), specs in sorted(by_gv.items()):
                key = f"apis/{group}/{version}" if group else f"api/{version}"
                documents[key] = openapi.group_version_document(
                    group, version, specs, crd_schemas.get((group, version), {})
                )
            self._openapi = documents
        return self._openapi

    def _serve_openapi(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        documents = self.openapi_documents()
        path = raw_request.path
        if path == "/openapi/v2":
            accept = raw_request.headers.get("Accept", "")
            if accept and "json" not in accept and "*/*" not in accept:
                # kubectl asks for protobuf only; answering 406 makes it use OpenAPI v3
                error = ApiError(406, "NotAcceptable", "only application/json is served")
                return aiohttp.web.json_response(error.as_status(), status=406)
            return aiohttp.web.json_response(openapi.v2_document(documents))
        if path.rstrip("/") == "/openapi/v3":
            paths = {
                key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={openapi.document_hash(doc)}"}
                for key, doc in documents.items()
            }
            return aiohttp.web.json_response({"paths": paths})
        key = path[len("/openapi/v3/") :].strip("/")
        if key not in documents:
            error = ApiError(404, "NotFound", "the server could not find the requested resource")
            return aiohttp.web.json_response(error.as_status(), status=404)
        return aiohttp.web.json_response(
            documents[key], headers={"Cache-Control": "public, immutable"}
        )

    async def _dispatch(
        self,
        raw_request: aiohttp.web.BaseRequest,
        spec: ResourceSpec,
        route: Route,
        verb: str,
        body: bytes,
    ) -> aiohttp.web.StreamResponse:
        namespace, name, sub = route.namespace, route.name, route.subresource
        not_found = ApiError(404, "NotFound", "the server could not find the requested resource")
        if namespace is not None and not spec.namespaced:
            raise not_found
        if spec.namespaced and namespace is None and verb not in ("list", "watch"):
            raise not_found
        if sub not in (None, "status") or (sub == "status" and not spec.status_subresource):
            raise not_found
        if sub is not None and verb not in ("get", "update", "patch"):
            raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported on {sub}")
        query = raw_request.query
        options = WriteOptions(
            field_validation=_field_validation(query), dry_run=query.get("dryRun") == "All"
        )
        as_table = tables.wants_table(raw_request.headers.get("Accept", ""))
        include = query.get("includeObject", "PartialObjectMetadata")
        json_response = aiohttp.web.json_response
        if verb in ("list", "watch", "deletecollection"):
            self._check_field_selector(spec, query.get("fieldSelector"))
        match verb:
            case "watch":
                transform = self._table_transform(spec, include) if as_table else None
                return await self._serve_watch_stream(raw_request, spec, namespace, name, transform)
            case "list":
                listing = self._list_response(spec, namespace, query)
                if as_table:
                    meta = listing["metadata"]
                    listing = tables.table(
                        listing["items"],
                        self._columns(spec),
                        resource_version=meta["resourceVersion"],
                        include_object=include,
                        continue_token=meta.get("continue", ""),
                        remaining=meta.get("remainingItemCount"),
                    )
                return json_response(listing)
            case "get":
                obj = self.get_object(spec, namespace, name or "")
                if as_table:
                    return json_response(self._table_transform(spec, include)(obj))
                return json_response(obj)
            case "create":
                data = self._parse_object_body(raw_request.content_type, body)
                obj = self.create_object(spec, namespace, data, options=options)
                return json_response(obj, status=201)
            case "update":
                data = self._parse_object_body(raw_request.content_type, body)
                obj = self.replace_object(
                    spec, namespace, name or "", data, subresource=sub, options=options
                )
                return json_response(obj)
            case "patch":
                ctype = raw_request.content_type
                if ctype == APPLY_PATCH:
                    manager = query.get("fieldManager")
                    if not manager:
                        raise ApiError(
                            400, "BadRequest", "PATCH /apply requires fieldManager to be set"
                        )
                    obj, created = self.apply_object(
                        spec,
                        namespace,
                        name or "",
                        self._parse_yaml(body),
                        manager=manager,
                        subresource=sub,
                        options=options,
                    )
                    return json_response(obj, status=201 if created else 200)
                data = self._parse_body(body)
                obj = self.patch_object(
                    spec,
                    namespace,
                    name or "",
                    data,
                    patch_type=ctype,
                    subresource=sub,
                    options=options,
                )
                return json_response(obj)
            case "delete":
                delete_options = self._parse_body(body) if body else {}
                if "propagationPolicy" in query:
                    delete_options["propagationPolicy"] = query["propagationPolicy"]
                if options.dry_run or "All" in (delete_options.get("dryRun") or []):
                    return json_response(self.get_object(spec, namespace, name or ""))
                obj, removed = self.delete_object(
                    spec, namespace, name or "", options=delete_options
                )
                return json_response(obj, status=200 if removed else 202)
            case "deletecollection":
                items = self.list_objects(
                    spec, namespace, query.get("labelSelector"), query.get("fieldSelector")
                )
                for item in items:
                    meta = item["metadata"]
                    self.delete_object(spec, meta.get("namespace"), meta["name"])
                kind = f"{spec.kind}List"
                return json_response({"apiVersion": spec.api_version, "kind": kind, "items": items})
        raise not_found  # pragma: no cover

    def _columns(self, spec: ResourceSpec) -> tuple[tables.Column, ...]:
        return tables.columns_for(spec.printer_columns, spec.group, spec.plural)

    def _table_transform(self, spec: ResourceSpec, include: str) -> Callable[[JsonDict], JsonDict]:
        columns = self._columns(spec)

        def transform(obj: JsonDict) -> JsonDict:
            rv = (obj.get("metadata") or {}).get("resourceVersion", "")
            return tables.table([obj], columns, resource_version=rv, include_object=include)

        return transform

    def _check_field_selector(self, spec: ResourceSpec, text: str | None) -> None:
        """400 for field labels that kube-apiserver does not support for the kind."""
        try:
            selector = FieldSelector.parse(text)
        except ValueError as e:
            raise ApiError(400, "BadRequest", str(e)) from e
        allowed = {"metadata.name", "metadata.namespace"}
        allowed.update(FIELD_LABELS.get((spec.group, spec.plural), ()))
        allowed.update(spec.selectable_fields)
        for path, _, _ in selector.terms:
            if path not in allowed:
                raise ApiError(400, "BadRequest", f"field label not supported: {path}")

    @staticmethod
    def _parse_body(body: bytes) -> Any:
        try:
            return json.loads(body)
        except ValueError as e:
            raise ApiError(400, "BadRequest", f"the request body is not valid JSON: {e}") from e

    @classmethod
    def _parse_object_body(cls, content_type: str, body: bytes) -> Any:
        if content_type == protobuf.PROTOBUF:  # kubectl create namespace/configmap/secret
            try:
                return protobuf.decode(body)
            except (protobuf.ProtobufError, KeyError, ValueError) as e:
                raise ApiError(
                    415,
                    "UnsupportedMediaType",
                    f"the emulator cannot decode this protobuf body ({e}); send JSON",
                ) from e
        return cls._parse_body(body)

    @staticmethod
    def _parse_yaml(body: bytes) -> Any:
        try:
            return yaml.safe_load(body)
        except yaml.YAMLError as e:
            raise ApiError(400, "BadRequest", f"error decoding YAML: {e}") from e

    # ---------------------------------------------------------------------------------------------
    # Listing & watching

    @staticmethod
    def _selectors(
        labels: str | None, fields: str | None, spec: ResourceSpec | None = None
    ) -> tuple[LabelSelector, FieldSelector]:
        try:
            label_selector, field_selector = (
                LabelSelector.parse(labels),
                FieldSelector.parse(fields),
            )
        except ValueError as e:
            raise ApiError(400, "BadRequest", str(e)) from e
        aliases = _FIELD_ALIASES.get((spec.group, spec.plural), {}) if spec else {}
        if aliases:
            field_selector = FieldSelector(
                tuple(
                    (aliases.get(path, path), eq, value) for path, eq, value in field_selector.terms
                )
            )
        return label_selector, field_selector

    def _list_response(
        self, spec: ResourceSpec, namespace: str | None, query: Mapping[str, str]
    ) -> JsonDict:
        items = self.list_objects(
            spec, namespace, query.get("labelSelector"), query.get("fieldSelector")
        )
        meta: JsonDict = {"resourceVersion": str(self.resource_version)}
        if query.get("limit"):
            offset = int(query.get("continue") or 0)
            limit = int(query["limit"])
            remaining = len(items) - offset - limit
            items = items[offset : offset + limit]
            meta["continue"] = str(offset + limit) if remaining > 0 else ""
            if remaining > 0:
                meta["remainingItemCount"] = remaining
        return {
            "apiVersion": spec.api_version,
            "kind": f"{spec.kind}List",
            "metadata": meta,
            "items": items,
        }

    async def _serve_watch_stream(
        self,
        raw_request: aiohttp.web.BaseRequest,
        spec: ResourceSpec,
        namespace: str | None,
        name: str | None,
        transform: Callable[[JsonDict], JsonDict] | None = None,
    ) -> aiohttp.web.StreamResponse:
        query = raw_request.query
        name_selector = f"metadata.name={name}" if name else None
        field_selector = ",".join(filter(None, [query.get("fieldSelector"), name_selector]))
        labels, fields = self._selectors(query.get("labelSelector"), field_selector, spec)
        watch = Watch(spec, namespace, labels, fields, transform=transform)
        since = query.get("resourceVersion") or None
        send_initial = query.get("sendInitialEvents") == "true"
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None

        # Compute the initial events & subscribe atomically (no awaits in between).
        initial: list[JsonDict] = []
        finish = False
        if since in (None, "0") or send_initial:
            for obj in self.list_objects(spec, namespace, None, None):
                if watch._relevant(obj):
                    initial.append({"type": "ADDED", "object": watch.show(obj)})
            if send_initial:
                bookmark_meta = {
                    "resourceVersion": str(self.resource_version),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                }
                bookmark = {"apiVersion": spec.api_version, "kind": spec.kind}
                initial.append(
                    {"type": "BOOKMARK", "object": bookmark | {"metadata": bookmark_meta}}
                )
        else:
            try:
                since_rv = int(since)
            except ValueError:
                raise ApiError(400, "BadRequest", f"invalid resource version: {since!r}") from None
            if since_rv < self.expired_before:
                gone = ApiError(
                    410, "Expired", f"too old resource version: {since_rv} ({self.expired_before})"
                )
                initial.append({"type": "ERROR", "object": gone.as_status()})
                finish = True
            else:
                for event in self.history:
                    if event.rv > since_rv and (translated := watch.translate(event)):
                        initial.append(translated)
        if not finish:
            self.watches.add(watch)

        response = aiohttp.web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(raw_request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        try:
            for initial_event in initial:
                await response.write(json.dumps(initial_event).encode() + b"\n")
            while not finish:
                wait = 0.5 if deadline is None else min(0.5, deadline - loop.time())
                if wait <= 0:
                    break
                try:
                    item = await asyncio.wait_for(watch.queue.get(), timeout=wait)
                except TimeoutError:
                    transport = raw_request.transport
                    if transport is None or transport.is_closing():
                        return response  # the client has gone
                    continue
                if item == _DROP_ABRUPTLY:
                    if raw_request.transport is not None:
                        raw_request.transport.abort()
                    return response
                if item == _DROP_GRACEFULLY:
                    break
                assert isinstance(item, dict)
                await response.write(json.dumps(item).encode() + b"\n")
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client has disconnected
        finally:
            self.watches.discard(watch)
        return response

    def drop_watches(
        self, store_key: tuple[str, str] | None = None, *, abrupt: bool = False
    ) -> int:
        """Close the matching watch streams (must run in the server's loop)."""
        dropped = 0
        for watch in list(self.watches):
            if store_key is None or watch.spec.store_key == store_key:
                watch.queue.put_nowait(_DROP_ABRUPTLY if abrupt else _DROP_GRACEFULLY)
                self.watches.discard(watch)
                dropped += 1
        return dropped

    def expire_history(self) -> None:
        """Watches resuming from any resourceVersion before now get 410 Gone."""
        self.expired_before = self.resource_version + 1

    def _emit(self, spec: ResourceSpec, type_: str, old: JsonDict | None, new: JsonDict) -> None:
        event = StoredEvent(
            int(new["metadata"]["resourceVersion"]), spec.store_key, type_, old, new
        )
        self.history.append(event)
        if spec.store_key in self.held:
            self.held[spec.store_key].append(event)
            return
        self._deliver(event)

    def release_held(self, store_key: tuple[str, str] | None = None) -> None:
        """Deliver held events to the watch streams (must run in the server's loop)."""
        for key in [k for k in self.held if store_key is None or k == store_key]:
            for event in self.held.pop(key):
                self._deliver(event)

    def _deliver(self, event: StoredEvent) -> None:
        for watch in list(self.watches):
            translated = watch.translate(event)
            if translated is not None:
                watch.queue.put_nowait(translated)

    # ---------------------------------------------------------------------------------------------
    # The object store (synchronous; run in the server's loop)

    def _key(self, spec: ResourceSpec, namespace: str | None, name: str) -> ObjectKey:
        return (spec.store_key, namespace if spec.namespaced else None, name)

    def _next_rv(self) -> str:
        self.resource_version += 1
        return str(self.resource_version)

    @staticmethod
    def _not_found(spec: ResourceSpec, name: str) -> ApiError:
        return ApiError(
            404,
            "NotFound",
            f'{spec.group_resource} "{name}" not found',
            details={"name": name, "group": spec.group, "kind": spec.plural},
        )

    @staticmethod
    def _conflict(spec: ResourceSpec, name: str, message: str | None = None) -> ApiError:
        return ApiError(
            409,
            "Conflict",
            f'Operation cannot be fulfilled on {spec.group_resource} "{name}": '
            + (
                message
                or "the object has been modified; please apply your changes"
                " to the latest version and try again"
            ),
            details={"name": name, "group": spec.group, "kind": spec.plural},
        )

    @staticmethod
    def invalid(spec: ResourceSpec, name: str, errors: Sequence[str | FieldError]) -> ApiError:
        """A 422 Invalid error worded as kube-apiserver does it."""
        qualified = f"{spec.kind}.{spec.group}" if spec.group else spec.kind
        texts = list(dict.fromkeys(str(error) for error in errors))
        joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
        causes = []
        seen: set[str] = set()
        for error in errors:
            if str(error) in seen:
                continue
            seen.add(str(error))
            if isinstance(error, FieldError):
                causes.append(error.cause)
                continue
            field_path, sep, text = error.partition(": ")
            causes.append(
                {"reason": "FieldValueInvalid", "message": text if sep else error}
                | ({"field": field_path} if sep else {})
            )
        return ApiError(
            422,
            "Invalid",
            f'{qualified} "{name}" is invalid: {joined}',
            details={"name": name, "group": spec.group, "kind": spec.kind, "causes": causes},
        )

    def crd_admission_for(self, spec: ResourceSpec) -> CrdAdmission | None:
        """The admission of a custom resource's CRD (``None`` for built-in kinds)."""
        if not spec.custom:
            return None
        return self.crd_admission.by_kind.get((spec.group, spec.kind))

    def _decode(self, spec: ResourceSpec, obj: JsonDict, options: WriteOptions) -> None:
        """Decode a request body as the server does: prune unknown fields (warnings, or a 400
        with ``fieldValidation=Strict``), 400 on wrong types, then apply the defaults."""
        unknown: list[str] = []
        crd = self.crd_admission_for(spec)
        if crd is not None:
            if not self.validate_crds:
                return
            try:
                unknown = crd.prepare(obj, spec.version)
            except KeyError:
                return
        elif self.validate_builtins and builtins.definition_name(
            spec.group, spec.version, spec.kind
        ):
            try:
                unknown = builtins.decode(obj, spec.group, spec.version, spec.kind).unknown
            except builtins.DecodeError as e:
                message = builtins.decode_error_message(spec.kind, spec.version, e)
                raise ApiError(400, "BadRequest", message) from e
            builtins.apply_defaults(spec.group, spec.plural, obj)
        if not unknown:
            return
        if options.field_validation == "Strict":
            detail = ", ".join(f'unknown field "{path}"' for path in unknown)
            message = builtins.decode_error_message(
                spec.kind, spec.version, f"strict decoding error: {detail}"
            )
            raise ApiError(400, "BadRequest", message)
        if options.field_validation == "Warn":
            self.warnings.extend(f'unknown field "{path}"' for path in unknown)

    def _admit(
        self,
        spec: ResourceSpec,
        new: JsonDict,
        old: JsonDict | None,
        subresource: str | None = None,
    ) -> None:
        """Validate a write (after decoding & defaulting); 422 Invalid when refused."""
        errors: list[str | FieldError] = []
        crd = self.crd_admission_for(spec)
        if crd is not None:
            if self.validate_crds and spec.version in crd.schemas:
                errors.extend(
                    crd.validate(
                        render(spec, new), render(spec, old) if old else None, spec.version
                    )
                )
        elif self.validate_builtins and builtins.definition_name(
            spec.group, spec.version, spec.kind
        ):
            errors.extend(
                builtins.validate(
                    spec.group,
                    spec.version,
                    spec.plural,
                    spec.kind,
                    render(spec, new),
                    render(spec, old) if old else None,
                    namespaced=spec.namespaced,
                    subresource=subresource,
                )
            )
        if self.admission is not None and spec.group in self.admission_groups:
            errors.extend(self.admission(render(spec, new), render(spec, old) if old else None))
        if errors:
            raise self.invalid(spec, new["metadata"].get("name", ""), errors)

    def _check_namespace(self, spec: ResourceSpec, namespace: str, name: str) -> None:
        """The NamespaceLifecycle admission: no objects in absent or terminating namespaces."""
        ns = self.store.get((("", "namespaces"), None, namespace))
        if ns is None:
            raise ApiError(
                404,
                "NotFound",
                f'namespaces "{namespace}" not found',
                details={"name": namespace, "kind": "namespaces"},
            )
        if ns["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                "Forbidden",
                f'{spec.group_resource} "{name}" is forbidden: unable to create new content in'
                f" namespace {namespace} because it is being terminated",
                details={"name": name, "group": spec.group, "kind": spec.plural},
            )

    def get_object(self, spec: ResourceSpec, namespace: str | None, name: str) -> JsonDict:
        obj = self.store.get(self._key(spec, namespace, name))
        if obj is None:
            raise self._not_found(spec, name)
        return render(spec, obj)

    def find_object(self, spec: ResourceSpec, namespace: str | None, name: str) -> JsonDict | None:
        obj = self.store.get(self._key(spec, namespace, name))
        return render(spec, obj) if obj is not None else None

    def list_objects(
        self,
        spec: ResourceSpec,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[JsonDict]:
        labels, fields = self._selectors(label_selector, field_selector, spec)
        return [
            render(spec, obj)
            for (store_key, ns, _), obj in sorted(
                self.store.items(), key=lambda kv: (kv[0][1] or "", kv[0][2])
            )
            if store_key == spec.store_key
            and (namespace is None or ns == namespace)
            and labels.matches(obj)
            and fields.matches(obj)
        ]

    def create_object(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        body: Any,
        *,
        admit: bool = True,
        options: WriteOptions = WriteOptions(),
    ) -> JsonDict:
        """Create an object like ``POST``; return it as served (with the 201 semantics)."""
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise ApiError(400, "BadRequest", "the object must be a JSON object with metadata")
        obj: JsonDict = copy.deepcopy(body)
        meta: JsonDict = obj.setdefault("metadata", {})
        if obj.get("kind") not in (None, spec.kind):
            raise ApiError(
                400, "BadRequest", f"the kind {obj['kind']!r} does not match {spec.kind!r}"
            )
        obj["apiVersion"], obj["kind"] = spec.api_version, spec.kind

        if spec.namespaced:
            namespace = namespace or meta.get("namespace")
            if not namespace:
                raise ApiError(400, "BadRequest", "the namespace is required for this resource")
            if meta.get("namespace") not in (None, "", namespace):
                raise ApiError(
                    400,
                    "BadRequest",
                    "the namespace of the provided object does not match"
                    " the namespace sent on the request",
                )
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)

        self._decode(spec, obj, options)  # every write is decoded & defaulted, as by the server
        meta = obj["metadata"]
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise self.invalid(
                    spec, "", ["metadata.name: Required value: name or generateName is required"]
                )
            while True:
                meta["name"] = prefix + "".join(self.rng.choice(_NAME_CHARS) for _ in range(5))
                if self._key(spec, namespace, meta["name"]) not in self.store:
                    break
        if admit and spec.namespaced and namespace:
            self._check_namespace(spec, namespace, meta["name"])
        key = self._key(spec, namespace, meta["name"])
        if key in self.store:
            raise ApiError(
                409,
                "AlreadyExists",
                f'{spec.group_resource} "{meta["name"]}" already exists',
                details={"name": meta["name"], "group": spec.group, "kind": spec.plural},
            )

        for key_name in (*_SYSTEM_META, "resourceVersion"):
            meta.pop(key_name, None)
        meta["uid"] = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        meta["creationTimestamp"] = now_rfc3339()
        meta["generation"] = 1
        if spec.status_subresource:
            obj.pop("status", None)
            status = _initial_status(spec)
            if status is not None:
                obj["status"] = status
        if spec.store_key == ("batch", "jobs"):
            _default_job(obj)

        if admit:
            self._admit(spec, obj, None)
        if options.dry_run:
            return render(spec, obj)
        meta["resourceVersion"] = self._next_rv()
        self.store[key] = obj
        self._stored(spec, obj)
        self._emit(spec, "ADDED", None, obj)
        return render(spec, obj)

    def _stored(self, spec: ResourceSpec, obj: JsonDict) -> None:
        """Side effects of storing an object: a stored CRD is served at once."""
        if spec.store_key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            try:
                self.register_crd(obj)
            except (KeyError, TypeError, IndexError) as e:
                logger.warning("kube-api-emulator cannot serve the CRD %s: %r", obj, e)

    def replace_object(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        admit: bool = True,
        options: WriteOptions = WriteOptions(),
    ) -> JsonDict:
        """Replace an object like ``PUT`` (of the main resource or of ``/status``)."""
        old = self.store.get(self._key(spec, namespace, name))
        if old is None:
            raise self._not_found(spec, name)
        if not isinstance(body, dict) or not isinstance(body.get("metadata", {}), dict):
            raise ApiError(400, "BadRequest", "the object must be a JSON object with metadata")
        if body.get("kind") not in (None, spec.kind):
            raise ApiError(
                400, "BadRequest", f"the kind {body['kind']!r} does not match {spec.kind!r}"
            )
        return self._commit_update(
            spec, old, copy.deepcopy(body), subresource, admit, options, replace=True
        )

    def patch_object(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        patch: Any,
        *,
        patch_type: str = MERGE_PATCH,
        subresource: str | None = None,
        admit: bool = True,
        options: WriteOptions = WriteOptions(),
    ) -> JsonDict:
        """Patch an object like ``PATCH`` (merge-, strategic-merge- or JSON-patch)."""
        old = self.store.get(self._key(spec, namespace, name))
        if old is None:
            raise self._not_found(spec, name)
        if patch_type == STRATEGIC_PATCH and spec.custom:
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types"
                " include: application/json-patch+json, application/merge-patch+json,"
                " application/apply-patch+yaml",
            )
        if patch_type == MERGE_PATCH:
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "a merge-patch must be a JSON object")
            candidate = merge_patch(old, patch)
        elif patch_type == STRATEGIC_PATCH:
            if not isinstance(patch, dict):
                raise ApiError(400, "BadRequest", "a strategic merge patch must be a JSON object")
            schema = strategic.root_schema(spec.group, spec.version, spec.kind)
            try:
                candidate = strategic.strategic_merge(render(spec, old), patch, schema)
            except strategic.PatchError as e:
                raise ApiError(422, "Invalid", str(e)) from e
        elif patch_type == JSON_PATCH:
            try:
                candidate = json_patch(old, patch)
            except JsonPatchError as e:
                raise ApiError(422, "Invalid", str(e)) from e
        else:
            raise ApiError(415, "UnsupportedMediaType", f"unsupported patch type: {patch_type}")
        if not isinstance(candidate, dict) or not isinstance(candidate.get("metadata"), dict):
            raise ApiError(422, "Invalid", "the patched object must be a JSON object with metadata")
        return self._commit_update(spec, old, candidate, subresource, admit, options)

    def apply_object(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        applied: Any,
        *,
        manager: str,
        subresource: str | None = None,
        options: WriteOptions = WriteOptions(),
    ) -> tuple[JsonDict, bool]:
        """Server-side apply (approximated: fields the same manager applied before and omits
        now are removed, lists merge by their keys; no ownership, no conflicts).
        Returns the object and whether it was created."""
        if not isinstance(applied, dict) or not isinstance(applied.get("metadata", {}), dict):
            raise ApiError(400, "BadRequest", "the applied configuration must be an object")
        if not applied.get("apiVersion") or not applied.get("kind"):
            raise ApiError(
                400, "BadRequest", "apiVersion and kind must be set in the applied configuration"
            )
        meta = applied.setdefault("metadata", {})
        if meta.get("name") not in (None, name):
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({meta['name']}) does not match the name on the URL"
                f" ({name})",
            )
        meta["name"] = name
        key = self._key(spec, namespace, name)
        old = self.store.get(key)
        if old is None:
            if subresource:
                raise self._not_found(spec, name)
            created = self.create_object(spec, namespace, applied, options=options)
            if not options.dry_run:
                self.applied[(key, manager)] = copy.deepcopy(applied)
            return created, True
        previous = self.applied.get((key, manager))
        schema: Mapping[str, Any] | None
        crd = self.crd_admission_for(spec)
        if crd is not None:
            schema = crd.schemas.get(spec.version)
        else:
            schema = strategic.root_schema(spec.group, spec.version, spec.kind)
        # the applied configuration is defaulted first (so list keys like ports' protocol match)
        defaulted = copy.deepcopy(applied)
        self._decode(spec, defaulted, WriteOptions(field_validation="Ignore"))
        candidate = strategic.apply_merge(render(spec, old), defaulted, previous, schema)
        result = self._commit_update(spec, old, candidate, subresource, True, options)
        if not options.dry_run:
            self.applied[(key, manager)] = copy.deepcopy(applied)
        return result, False

    def _commit_update(
        self,
        spec: ResourceSpec,
        old: JsonDict,
        candidate: JsonDict,
        subresource: str | None,
        admit: bool,
        options: WriteOptions = WriteOptions(),
        *,
        replace: bool = False,
    ) -> JsonDict:
        old_meta = old["metadata"]
        name = old_meta["name"]
        cand_meta: JsonDict = candidate.setdefault("metadata", {})
        if cand_meta.get("name") not in (None, name):
            raise ApiError(
                400,
                "BadRequest",
                f"the name of the object ({cand_meta['name']}) does not match the name on the URL"
                f" ({name})",
            )
        if spec.namespaced and cand_meta.get("namespace") not in (None, old_meta["namespace"]):
            raise ApiError(
                400,
                "BadRequest",
                "the namespace of the provided object does not match"
                " the namespace sent on the request",
            )
        if cand_meta.get("uid") not in (None, old_meta["uid"]):
            raise self._conflict(
                spec,
                name,
                f"Precondition failed: UID in precondition: {cand_meta['uid']},"
                f" UID in object meta: {old_meta['uid']}",
            )
        if cand_meta.get("resourceVersion") not in (None, "", old_meta["resourceVersion"]):
            raise self._conflict(spec, name)
        if replace and admit and spec.custom and not cand_meta.get("resourceVersion"):
            raise self.invalid(
                spec,
                name,
                ["metadata.resourceVersion: Invalid value: 0x0: must be specified for an update"],
            )

        candidate["apiVersion"], candidate["kind"] = spec.api_version, spec.kind
        self._decode(spec, candidate, options)  # every write is decoded & defaulted
        cand_meta = candidate["metadata"]

        if subresource == "status":
            new = copy.deepcopy(old)
            if "status" in candidate:
                new["status"] = candidate["status"]
            else:
                new.pop("status", None)
        else:
            new = candidate
            new["apiVersion"], new["kind"] = old["apiVersion"], old["kind"]
            if spec.status_subresource:
                new.pop("status", None)
                if "status" in old:
                    new["status"] = copy.deepcopy(old["status"])
            new_meta = new["metadata"]
            for key_name in (*_SYSTEM_META, "name", "namespace"):
                if key_name in old_meta:
                    new_meta[key_name] = old_meta[key_name]
                else:
                    new_meta.pop(key_name, None)
            if old_meta.get("deletionTimestamp"):
                added = set(new_meta.get("finalizers") or []) - set(
                    old_meta.get("finalizers") or []
                )
                if added:
                    raise ApiError(
                        422,
                        "Forbidden",
                        f'{spec.group_resource} "{name}" is forbidden: no new finalizers can be'
                        " added if the object is being deleted, found new finalizers"
                        f" {sorted(added)}",
                    )
            if not new_meta.get("finalizers"):
                new_meta.pop("finalizers", None)
        new["metadata"]["resourceVersion"] = old_meta["resourceVersion"]

        if new == old:
            return render(spec, old)  # no-op writes change nothing (like kube-apiserver)

        ignored = ("metadata", "status") if spec.status_subresource else ("metadata",)
        if without(new, *ignored) != without(old, *ignored):
            new["metadata"]["generation"] = int(old_meta.get("generation", 0)) + 1

        if admit:
            self._admit(spec, new, old, subresource)
        if options.dry_run:
            return render(spec, new)
        new["metadata"]["resourceVersion"] = self._next_rv()
        key = self._key(spec, old_meta.get("namespace"), name)
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self.store[key] = new
            return self._remove(spec, key, new, "Background", bump=False)
        self.store[key] = new
        self._stored(spec, new)
        self._emit(spec, "MODIFIED", old, new)
        return render(spec, new)

    def delete_object(
        self,
        spec: ResourceSpec,
        namespace: str | None,
        name: str,
        *,
        options: Mapping[str, Any] | None = None,
    ) -> tuple[JsonDict, bool]:
        """
        Delete an object like ``DELETE``; return the last state and whether it is gone.

        Objects with finalizers only get ``deletionTimestamp`` and stay until
        the finalizers are removed. Dependents (by ``ownerReferences``) are
        garbage-collected in the background unless ``propagationPolicy=Orphan``.
        """
        key = self._key(spec, namespace, name)
        old = self.store.get(key)
        if old is None:
            raise self._not_found(spec, name)
        options = options or {}
        preconditions = options.get("preconditions") or {}
        meta = old["metadata"]
        if preconditions.get("uid") not in (None, meta["uid"]):
            raise self._conflict(
                spec,
                name,
                f"Precondition failed: UID in precondition: {preconditions['uid']},"
                f" UID in object meta: {meta['uid']}",
            )
        if preconditions.get("resourceVersion") not in (None, meta["resourceVersion"]):
            raise self._conflict(spec, name)
        propagation = str(options.get("propagationPolicy") or "Background")

        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return render(spec, old), False
            new = copy.deepcopy(old)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["metadata"]["resourceVersion"] = self._next_rv()
            self.store[key] = new
            self._emit(spec, "MODIFIED", old, new)
            return render(spec, new), False
        return self._remove(spec, key, old, propagation), True

    def _remove(
        self,
        spec: ResourceSpec,
        key: ObjectKey,
        obj: JsonDict,
        propagation: str,
        *,
        bump: bool = True,
    ) -> JsonDict:
        final = copy.deepcopy(obj)
        if bump:
            final["metadata"]["resourceVersion"] = self._next_rv()
        del self.store[key]
        self.applied = {k: v for k, v in self.applied.items() if k[0] != key}
        self._emit(spec, "DELETED", obj, final)
        if propagation != "Orphan":
            self._collect_garbage(final["metadata"]["uid"])
        if spec.store_key == ("", "namespaces"):
            self._delete_namespace_content(final["metadata"]["name"])
        elif spec.store_key == ("apiextensions.k8s.io", "customresourcedefinitions"):
            with contextlib.suppress(KeyError, TypeError):
                self._crd_removed(final)
        return render(spec, final)

    def _delete_namespace_content(self, namespace: str) -> None:
        """What the namespace controller does: delete everything in a deleted namespace."""
        for key in [k for k in self.store if k[1] == namespace]:
            if key in self.store:
                spec = self._spec_for_store_key(key[0])
                self.delete_object(spec, key[1], key[2])

    def _collect_garbage(self, owner_uid: str) -> None:
        """Delete the dependents of a deleted owner (recursively, via the usual deletion)."""
        existing_uids = {obj["metadata"]["uid"] for obj in self.store.values()}
        for key, obj in list(self.store.items()):
            refs = obj["metadata"].get("ownerReferences") or []
            if key not in self.store or not any(ref.get("uid") == owner_uid for ref in refs):
                continue
            dependent_spec = self._spec_for_store_key(key[0])
            if any(ref.get("uid") in existing_uids for ref in refs):
                remaining = [ref for ref in refs if ref.get("uid") != owner_uid]
                patch = {"metadata": {"ownerReferences": remaining}}
                self.patch_object(dependent_spec, key[1], key[2], patch, admit=False)
            else:
                self.delete_object(dependent_spec, key[1], key[2])

    def _spec_for_store_key(self, store_key: tuple[str, str]) -> ResourceSpec:
        specs = [s for s in self.registry if s.store_key == store_key]
        return next((s for s in specs if s.preferred), specs[0])
