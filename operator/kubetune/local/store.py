"""The in-process object store behind `kubetune run`, persisted in the workdir.

It plays the API server's part for the local runtime: kubetune resources with their status and
generation (also those a planner creates, e.g. a FeedbackLoop's cycle resources, with their
owner references), the children the planners asked for (ConfigMaps, Jobs, Services), the patches
of objects that only exist in a cluster, events, and the local executions standing in for Jobs'
pods. Everything is saved atomically to
``<workdir>/state.json`` after each change, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune.api.contract import ANNOTATION_APPROVE, ANNOTATION_REJECT, LABEL_KIND, LABEL_NAME

STATE_FILE = "state.json"
STATE_VERSION = 1
# Set by `kubetune approve` (as by `kubectl annotate`), kept when the manifest is applied again.
IMPERATIVE_ANNOTATIONS = (ANNOTATION_APPROVE, ANNOTATION_REJECT)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class Execution:
    """A local process standing in for a Job's pod."""

    job: str
    run_id: str
    state: str = "Pending"  # Pending | Running | Succeeded | Failed | Interrupted
    pid: int | None = None
    pid_start: str | None = None  # with host: the process's identity (pids are reused)
    host: str | None = None
    exit_code: int | None = None
    started: str | None = None
    finished: str | None = None
    log_path: str | None = None
    termination_log: str | None = None
    progress_file: str | None = None
    termination_message: str | None = None
    last_log_line: str | None = None


@dataclass
class StoredResource:
    """A kubetune resource as the local store keeps it."""

    body: dict[str, Any]  # apiVersion, kind, metadata (with generation), spec, status
    source: str = ""
    # The size and modification time of the local files it reads, as of the last
    # `kubetune run` (kubetune.local.dataset_inputs); None until first seen.
    inputs_signature: str | None = None

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        return str(self.body["metadata"]["name"])

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    @property
    def key_text(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def uid(self) -> str:
        return str(self.body["metadata"].get("uid") or "")


@dataclass
class LocalState:
    """Everything `kubetune run` knows, as saved in state.json."""

    namespace: str = "default"
    resources: dict[str, StoredResource] = field(default_factory=dict)  # "Kind/name" -> resource
    children: dict[str, dict[str, Any]] = field(default_factory=dict)  # "Kind/name" -> manifest
    executions: dict[str, Execution] = field(default_factory=dict)  # job name -> execution
    events: list[dict[str, str]] = field(default_factory=list)
    # Objects outside the store a planner patched (a FeedbackLoop's promotion target), as the
    # merge of every patch: "Kind/name" -> apiVersion, kind, metadata and the patched fields.
    patched: dict[str, dict[str, Any]] = field(default_factory=dict)


def resource_key(kind: str, name: str) -> str:
    return f"{kind}/{name}"


def owner_references(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """metadata.ownerReferences of a stored object (empty when it has none)."""
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return [ref for ref in refs if isinstance(ref, dict)]


def controller_uid(obj: dict[str, Any]) -> str | None:
    """The uid of the object's controller (the owner reference with controller: true)."""
    for ref in owner_references(obj):
        if ref.get("controller"):
            return str(ref.get("uid") or "") or None
    return None


class LocalStore:
    """Load, mutate and persist :class:`LocalState` under a workdir."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.path = workdir / STATE_FILE
        self.state = self._load()

    def _load(self) -> LocalState:
        if not self.path.is_file():
            return LocalState()
        data = json.loads(self.path.read_text())
        if data.get("version") != STATE_VERSION:
            raise ValueError(
                f"{self.path} was written by another kubetune version; use a new --workdir"
            )
        return LocalState(
            namespace=data.get("namespace", "default"),
            resources={k: StoredResource(**v) for k, v in data.get("resources", {}).items()},
            children=data.get("children", {}),
            executions={k: Execution(**v) for k, v in data.get("executions", {}).items()},
            events=data.get("events", []),
            patched=data.get("patched", {}),
        )

    def save(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = {
            "version": STATE_VERSION,
            "namespace": self.state.namespace,
            "resources": {k: asdict(v) for k, v in self.state.resources.items()},
            "children": self.state.children,
            "executions": {k: asdict(v) for k, v in self.state.executions.items()},
            "events": self.state.events[-500:],
            "patched": self.state.patched,
        }
        tmp = self.path.with_name(f".{STATE_FILE}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1, default=str))
        tmp.replace(self.path)

    # --- resources -------------------------------------------------------------------------

    def apply(self, doc: dict[str, Any], source: str) -> str:
        """Create or update a resource like `kubectl apply`; returns created|configured|unchanged.

        Labels and annotations follow the manifest (e.g. a FeedbackLoop's
        ``kubetune.dev/trigger``); the generation is bumped only when the spec changes; status
        is kept.
        """
        key = resource_key(doc["kind"], doc["metadata"]["name"])
        existing = self.state.resources.get(key)
        if existing is None:
            self.create_resource(doc, source)
            return "created"
        existing.source = source
        relabelled = False
        for meta_field in ("labels", "annotations"):
            wanted = doc["metadata"].get(meta_field) or {}
            if meta_field == "annotations":
                # like `kubectl annotate` then `kubectl apply`: an approval given with
                # `kubetune approve` stays until the manifest sets that annotation itself
                current = existing.body["metadata"].get(meta_field) or {}
                kept = {k: v for k, v in current.items() if k in IMPERATIVE_ANNOTATIONS}
                wanted = {**kept, **wanted}
            if (existing.body["metadata"].get(meta_field) or {}) != wanted:
                existing.body["metadata"][meta_field] = wanted
                relabelled = True
        if existing.body.get("spec") == doc.get("spec", {}):
            return "configured" if relabelled else "unchanged"
        existing.body["spec"] = doc.get("spec", {})
        existing.body["metadata"]["generation"] = int(existing.body["metadata"]["generation"]) + 1
        return "configured"

    def create_resource(self, doc: dict[str, Any], source: str) -> bool:
        """Create a resource when absent, as a POST would (False: it exists, nothing changes).

        It gets the store's namespace, a uid (``local-<kind>-<name>``), generation 1 and a
        creation time; labels and owner references in ``doc`` are kept.
        """
        key = resource_key(doc["kind"], doc["metadata"]["name"])
        if key in self.state.resources:
            return False
        body = {
            "apiVersion": doc["apiVersion"],
            "kind": doc["kind"],
            "metadata": {
                **doc["metadata"],
                "namespace": self.state.namespace,
                "uid": f"local-{doc['kind'].lower()}-{doc['metadata']['name']}",
                "generation": 1,
                "creationTimestamp": now().isoformat(),
            },
            "spec": doc.get("spec", {}),
        }
        self.state.resources[key] = StoredResource(body=body, source=source)
        return True

    def owned_by(self, uid: str) -> list[StoredResource]:
        """The resources whose controller owner reference names ``uid``."""
        return [
            stored for stored in self.state.resources.values() if controller_uid(stored.body) == uid
        ]

    def children_owned_by(self, uid: str) -> list[dict[str, Any]]:
        """The children (Jobs, ConfigMaps, Services) with an owner reference to ``uid``."""
        return [
            child
            for child in self.state.children.values()
            if any(ref.get("uid") == uid for ref in owner_references(child))
        ]

    def set_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        self.state.resources[resource_key(kind, name)].body["status"] = status

    def add_event(self, kind: str, name: str, type_: str, reason: str, message: str) -> None:
        self.state.events.append(
            {
                "time": now().isoformat(),
                "object": resource_key(kind, name),
                "type": type_,
                "reason": reason,
                "message": message,
            }
        )

    # --- children ----------------------------------------------------------------------------

    def create_child(self, manifest: dict[str, Any]) -> bool:
        """Create a child when absent (idempotent); True when it was created."""
        key = resource_key(manifest["kind"], manifest["metadata"]["name"])
        if key in self.state.children:
            return False
        self.state.children[key] = manifest
        return True

    def jobs_of(self, kind: str, name: str) -> list[dict[str, Any]]:
        return [
            child
            for child in self.state.children.values()
            if child["kind"] == "Job"
            and child["metadata"].get("labels", {}).get(LABEL_KIND) == kind
            and child["metadata"].get("labels", {}).get(LABEL_NAME) == name
        ]

    def delete_job(self, job_name: str) -> None:
        """Forget a Job and its execution (used to re-run an interrupted one)."""
        self.state.children.pop(resource_key("Job", job_name), None)
        self.state.executions.pop(job_name, None)

    def delete_child(self, kind: str, name: str) -> bool:
        """Remove a child (a Job with its execution); False when there was none."""
        existed = resource_key(kind, name) in self.state.children
        if kind == "Job":
            self.delete_job(name)
        else:
            self.state.children.pop(resource_key(kind, name), None)
        return existed

    def delete_resource(self, kind: str, name: str) -> bool:
        """Remove one resource (not what it owns); False when there was none."""
        return self.state.resources.pop(resource_key(kind, name), None) is not None
