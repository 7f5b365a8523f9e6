"""In-memory views of the cluster: kopf indexes of kubetune resources, their Jobs and Pods.

kopf fills every index from its watch streams and, at startup, lists everything before the first
handler runs, so a restarted operator plans with the whole world in view. The controllers read:

* ``resources``: each kubetune resource by (namespace, kind, name) -> its body;
* ``referrers``: each dependency (namespace, kind, name) -> the resources that reference it;
* ``owned``: each controlling kubetune resource (namespace, kind, name) -> (its uid, body) of the
  kubetune resources it controls (a FeedbackLoop's cycle Datasets, FinetuneJobs...);
* ``jobs``: each owner (namespace, kind, name) -> (owner uid, Job body) of its runs;
* ``pods``: each Job (namespace, job name) -> its Pods.

One index per kind and purpose (kopf keys indexes by handler id). Values are plain dicts copied
from the event, never kopf's live views. Bodies written by the operator itself (the answer to a
status patch) are newer than the watch until its event arrives: :class:`Fresh` keeps them and
:func:`newest` picks by resourceVersion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import kopf
from pydantic import ValidationError

from kubetune.api.common import API_VERSION, GROUP
from kubetune.api.contract import JOB_NAME_LABEL, LEGACY_JOB_NAME_LABEL
from kubetune.api.kinds import KIND_INFO, parse_resource
from kubetune.api.resources import AnyResource
from kubetune.plan import naming
from kubetune.plan.refs import referenced_resources
from kubetune.plan.runs import conditions_finished

VERSION = API_VERSION.split("/", 1)[1]

Key = tuple[str, str, str]  # (namespace, kind, name)


def plain(value: Any) -> Any:
    """A deep copy made of dicts and lists (kopf bodies are read-only live views)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def key_of(body: Mapping[str, Any]) -> Key:
    """(namespace, kind, name) of an object."""
    meta = body["metadata"]
    return (str(meta.get("namespace") or "default"), str(body["kind"]), str(meta["name"]))


def resources_index(kind: str) -> str:
    return f"kubetune_{KIND_INFO[kind].plural}"


def referrers_index(kind: str) -> str:
    return f"kubetune_{KIND_INFO[kind].plural}_referrers"


def owned_index(kind: str) -> str:
    return f"kubetune_{KIND_INFO[kind].plural}_by_owner"


JOBS_INDEX = "kubetune_jobs"
JOB_OWNERS_INDEX = "kubetune_job_owners"
PODS_INDEX = "kubetune_pods"


def parse(body: Mapping[str, Any]) -> AnyResource:
    """The typed resource of a body (raises pydantic's ValidationError)."""
    return parse_resource(body)


def parse_lenient(body: Mapping[str, Any]) -> AnyResource | None:
    """The typed resource, ignoring a status it cannot read; None when the spec is invalid."""
    try:
        return parse(body)
    except ValidationError:
        pass
    try:
        return parse({k: v for k, v in body.items() if k != "status"})
    except ValidationError:
        return None


def controller_owner(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The controlling ownerReference of an object, if any."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("controller"):
            return dict(ref)
    return None


def kubetune_owner(body: Mapping[str, Any]) -> tuple[Key, str] | None:
    """(namespace, kind, name) and uid of the kubetune resource controlling an object, if any."""
    owner = controller_owner(body)
    if owner is None or owner.get("apiVersion") != API_VERSION:
        return None
    if owner.get("kind") not in KIND_INFO:
        return None
    namespace = str((body.get("metadata") or {}).get("namespace") or "default")
    return (namespace, str(owner["kind"]), str(owner["name"])), str(owner.get("uid") or "")


def job_finished(job: Mapping[str, Any]) -> bool:
    """Whether a Job body's outcome is decided (:func:`kubetune.plan.runs.conditions_finished`)."""
    return conditions_finished((job.get("status") or {}).get("conditions") or [])


def pod_finished(pod: Mapping[str, Any]) -> bool:
    """Whether a Pod has terminated (its termination message is final)."""
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def job_name_of_pod(pod: Mapping[str, Any]) -> str | None:
    """The Job a Pod belongs to (label, else ownerReference)."""
    labels = (pod.get("metadata") or {}).get("labels") or {}
    name = labels.get(JOB_NAME_LABEL) or labels.get(LEGACY_JOB_NAME_LABEL)
    if name:
        return str(name)
    owner = controller_owner(pod)
    return str(owner["name"]) if owner and owner.get("kind") == "Job" else None


def register_indexes(registry: kopf.OperatorRegistry, kind: str) -> None:
    """Index a kubetune kind: its bodies and what each of them references."""
    plural = KIND_INFO[kind].plural

    @kopf.index(GROUP, VERSION, plural, id=resources_index(kind), registry=registry)
    def index_resource(body: kopf.Body, **_: Any) -> dict[Key, dict[str, Any]]:
        copy = plain(body)
        return {key_of(copy): copy}

    @kopf.index(GROUP, VERSION, plural, id=referrers_index(kind), registry=registry)
    def index_references(body: kopf.Body, **_: Any) -> dict[Key, tuple[str, str]]:
        resource = parse_lenient(plain(body))
        if resource is None:
            return {}
        return {
            (resource.namespace, ref_kind, ref_name): (resource.kind, resource.name)
            for ref_kind, ref_name in referenced_resources(resource)
        }

    @kopf.index(GROUP, VERSION, plural, id=owned_index(kind), registry=registry)
    def index_by_owner(body: kopf.Body, **_: Any) -> dict[Key, tuple[str, dict[str, Any]]]:
        owner = kubetune_owner(body)
        if owner is None:
            return {}
        return {owner[0]: (owner[1], plain(body))}


def register_child_indexes(registry: kopf.OperatorRegistry) -> None:
    """Index the Jobs of kubetune resources by owner, and their Pods by Job."""
    labels = {naming.LABEL_KIND: kopf.PRESENT}

    @kopf.index("batch", "v1", "jobs", id=JOBS_INDEX, labels=labels, registry=registry)
    def index_job(body: kopf.Body, **_: Any) -> dict[Key, tuple[str, dict[str, Any]]]:
        owner = controller_owner(body)
        if owner is None or owner.get("apiVersion") != API_VERSION:
            return {}
        namespace = str(body.metadata.namespace or "default")
        key = (namespace, str(owner["kind"]), str(owner["name"]))
        return {key: (str(owner.get("uid", "")), plain(body))}

    @kopf.index("batch", "v1", "jobs", id=JOB_OWNERS_INDEX, labels=labels, registry=registry)
    def index_job_owner(body: kopf.Body, **_: Any) -> dict[tuple[str, str], Key]:
        owner = owner_key(body)
        if owner is None:
            return {}
        return {(owner[0], str(body.metadata.name)): owner}

    @kopf.index("", "v1", "pods", id=PODS_INDEX, labels=labels, registry=registry)
    def index_pod(body: kopf.Body, **_: Any) -> dict[tuple[str, str], dict[str, Any]]:
        job = job_name_of_pod(body)
        if job is None:
            return {}
        return {(str(body.metadata.namespace or "default"), job): plain(body)}


def _resource_version(body: Mapping[str, Any]) -> int:
    text = str((body.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else -1


def newest(*bodies: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The body with the highest resourceVersion (the first one when they cannot be compared)."""
    present: list[Mapping[str, Any]] = [b for b in bodies if b is not None]
    if not present:
        return None
    best: Mapping[str, Any] = max(present, key=_resource_version)
    return dict(best)


class Fresh:
    """Bodies of kubetune resources as last written by this operator, newer than the watch."""

    def __init__(self) -> None:
        self._bodies: dict[Key, dict[str, Any]] = {}

    def remember(self, body: Mapping[str, Any]) -> None:
        key = key_of(body)
        self._bodies[key] = newest(self._bodies.get(key), body) or dict(body)

    def get(self, key: Key) -> dict[str, Any] | None:
        return self._bodies.get(key)

    def forget(self, key: Key) -> None:
        self._bodies.pop(key, None)


@dataclass(frozen=True)
class Indexes:
    """The kopf indexes a handler received as kwargs, with typed lookups."""

    kwargs: Mapping[str, Any]

    def _index(self, name: str) -> kopf.Index[Any, Any] | None:
        index = self.kwargs.get(name)
        return index if isinstance(index, kopf.Index) else None

    def _values(self, name: str, key: Any) -> list[Any]:
        index = self._index(name)
        if index is None or key not in index:
            return []
        return list(index[key])

    def resource(self, key: Key) -> dict[str, Any] | None:
        """The indexed body of a kubetune resource."""
        values = self._values(resources_index(key[1]), key)
        return newest(*values)

    def referrers(self, key: Key) -> set[Key]:
        """The resources that reference ``key``."""
        namespace = key[0]
        return {
            (namespace, kind, name)
            for info_kind in KIND_INFO
            for kind, name in self._values(referrers_index(info_kind), key)
        }

    def owned(self, key: Key, uid: str | None) -> list[dict[str, Any]]:
        """The kubetune resources controlled by the resource with this uid (any kind)."""
        if not uid:
            return []
        return [
            body
            for kind in KIND_INFO
            for owner_uid, body in self._values(owned_index(kind), key)
            if owner_uid == uid
        ]

    def jobs(self, key: Key, uid: str | None) -> list[dict[str, Any]]:
        """The Jobs owned by the resource with this uid."""
        return [job for owner_uid, job in self._values(JOBS_INDEX, key) if owner_uid == uid]

    def pods(self, namespace: str, job: str) -> list[dict[str, Any]]:
        """The Pods of a Job."""
        return self._values(PODS_INDEX, (namespace, job))

    def job_owner(self, namespace: str, job: str) -> Key | None:
        """The kubetune resource owning a Job, by the Job's name (for a Pod's event)."""
        owners = self._values(JOB_OWNERS_INDEX, (namespace, job))
        return (str(owners[0][0]), str(owners[0][1]), str(owners[0][2])) if owners else None


def owner_key(job: Mapping[str, Any]) -> Key | None:
    """The kubetune resource that owns a Job."""
    owner = controller_owner(job)
    if owner is None or owner.get("apiVersion") != API_VERSION:
        return None
    namespace = str((job.get("metadata") or {}).get("namespace") or "default")
    return (namespace, str(owner["kind"]), str(owner["name"]))
