"""Apply a planner's :class:`~kubetune.plan.world.Plan` to the local store.

What kube-apiserver and its garbage collector do for the operator, done on the store:

- ``children``: ConfigMaps, Jobs and Services are created when absent. A kubetune resource (a
  FeedbackLoop's cycle Dataset, FinetuneJob, Compression, Evaluation) becomes a *resource* in the
  store, validated like a manifest, with a uid, generation 1 and the owner references and labels
  the planner gave it; the runner plans it on its next pass like a user-applied one. Creating
  it again is a no-op (a 409 in a cluster).
- ``deletions``: a Job (its running process stopped first) or a ConfigMap is removed; a kubetune
  resource is removed with everything it owns: its Jobs and ConfigMaps, and the resources it
  controls, recursively (propagation as with ``ownerReferences``).
- ``patches`` are JSON merge patches (RFC 7386). A patch of a stored Job is merged into it (a
  running Job patched to ``spec.suspend: true`` has its process stopped, as Kubernetes deletes
  a suspended Job's pods); a patch of a stored resource is merged into it. Any other object (a
  promotion target such as a Deployment) has no cluster to go to: the merged patch is recorded
  in the store's ``patched`` objects and a note says what would have been patched.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kubetune.local.executor import notes_for
from kubetune.local.store import LocalStore, StoredResource, owner_references, resource_key
from kubetune.plan.world import Plan
from kubetune.schema.validation import format_errors, is_kubetune, validate_manifest

# Fields of a patch that address the object rather than change it.
ADDRESS_FIELDS = ("apiVersion", "kind")
ADDRESS_METADATA = ("name", "namespace")
# The kinds of children the store keeps (apiVersion, kind); patches of others are recorded.
STORED_CHILD_KINDS = {("batch/v1", "Job"), ("v1", "ConfigMap"), ("v1", "Service")}


@dataclass
class Applied:
    """What applying one plan did."""

    changed: bool = False
    notes: list[str] = field(default_factory=list)


def merge_patch(target: Any, patch: Any) -> Any:
    """``target`` with the JSON merge patch ``patch`` applied (RFC 7386); neither is modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def patched_fields(patch: dict[str, Any]) -> list[str]:
    """The fields a patch sets, as ``dotted.path=value`` (``=null`` for a removal)."""
    out: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(inner, f"{path}.{key}" if path else str(key))
        else:
            out.append(f"{path}={'null' if value is None else value}")

    for key, value in patch.items():
        if key in ADDRESS_FIELDS:
            continue
        if key == "metadata" and isinstance(value, dict):
            rest = {k: v for k, v in value.items() if k not in ADDRESS_METADATA}
            if rest:
                walk(rest, "metadata")
            continue
        walk(value, key)
    return out


class PlanApplier:
    """Applies plans to one store; ``stop`` ends a Job's local process (True when it ran)."""

    def __init__(self, store: LocalStore, stop: Callable[[str], bool]) -> None:
        self.store = store
        self.stop = stop
        self._rejected: set[str] = set()

    def apply(self, owner: StoredResource, plan: Plan) -> Applied:
        """Deletions, then children, then patches, as the operator applies them."""
        applied = Applied()
        for ref in plan.deletions:
            applied.changed = self.delete(ref) or applied.changed
        for child in plan.children:
            applied.changed = self.create(owner, child, applied.notes) or applied.changed
        for patch in plan.patches:
            applied.changed = self.patch(patch, applied.notes) or applied.changed
        return applied

    # --- children ----------------------------------------------------------------------------

    def create(self, owner: StoredResource, child: dict[str, Any], notes: list[str]) -> bool:
        """Create a child or an owned resource when absent; True when it was created."""
        who = f"{owner.kind}/{owner.name}"
        if not is_kubetune(child):
            created = self.store.create_child(child)
            if created and child["kind"] == "Job":
                notes.extend(f"{who}: {note}" for note in notes_for(child))
            return created
        key = resource_key(child["kind"], child["metadata"]["name"])
        if key in self.store.state.resources:
            return False
        errors = validate_manifest(child)
        if errors:
            # A cluster answers 422: the owner's planner made an invalid object. Say it once.
            if key not in self._rejected:
                self._rejected.add(key)
                message = f"cannot create {key}: {format_errors(child, errors)}"
                self.store.add_event(owner.kind, owner.name, "Warning", "CreateFailed", message)
                notes.append(f"{who}: {message}")
            return False
        return self.store.create_resource(child, source=who)

    # --- deletions ---------------------------------------------------------------------------

    def delete(self, ref: dict[str, Any]) -> bool:
        """Delete what ``ref`` names (absent: nothing happens); True when something went."""
        kind, name = str(ref["kind"]), str(ref["metadata"]["name"])
        if is_kubetune(ref):
            return self._delete_resource(kind, name)
        if kind == "Job":
            self.stop(name)
        return self.store.delete_child(kind, name)

    def _delete_resource(self, kind: str, name: str) -> bool:
        stored = self.store.state.resources.get(resource_key(kind, name))
        if stored is None:
            return False
        uid = stored.uid
        self.store.delete_resource(kind, name)
        for owned in self.store.owned_by(uid):
            self._delete_resource(owned.kind, owned.name)
        living = {r.uid for r in self.store.state.resources.values()}
        for child in self.store.children_owned_by(uid):
            # Garbage collection keeps a dependent that still has another living owner.
            if any(r.get("uid") in living for r in owner_references(child)):
                continue
            child_name = str(child["metadata"]["name"])
            if child["kind"] == "Job":
                self.stop(child_name)
            self.store.delete_child(str(child["kind"]), child_name)
        return True

    # --- patches -----------------------------------------------------------------------------

    def patch(self, patch: dict[str, Any], notes: list[str]) -> bool:
        """Merge a patch into its target, or record it; True when anything changed."""
        kind, name = str(patch["kind"]), str(patch["metadata"]["name"])
        key = resource_key(kind, name)
        if is_kubetune(patch):
            stored = self.store.state.resources.get(key)
            return stored is not None and self._patch_resource(stored, patch)
        if (str(patch.get("apiVersion")), kind) in STORED_CHILD_KINDS:
            # Absent: a 404 in a cluster, nothing to do.
            return key in self.store.state.children and self._patch_child(key, patch)
        return self._record(key, patch, notes)

    def _patch_child(self, key: str, patch: dict[str, Any]) -> bool:
        current = self.store.state.children[key]
        merged = merge_patch(current, patch)
        if merged == current:
            return False
        self.store.state.children[key] = merged
        if merged["kind"] == "Job" and (merged.get("spec") or {}).get("suspend"):
            name = str(merged["metadata"]["name"])
            if self.stop(name):
                # A suspended Job has no pods; resuming it starts a new one.
                self.store.state.executions.pop(name, None)
        return True

    def _patch_resource(self, stored: StoredResource, patch: dict[str, Any]) -> bool:
        changes = {k: v for k, v in patch.items() if k != "status"}
        merged = merge_patch(stored.body, changes)
        if merged == stored.body:
            return False
        if merged.get("spec") != stored.body.get("spec"):
            merged["metadata"]["generation"] = int(stored.body["metadata"]["generation"]) + 1
        stored.body = merged
        return True

    def _record(self, key: str, patch: dict[str, Any], notes: list[str]) -> bool:
        current = self.store.state.patched.get(key, {})
        merged = merge_patch(current, patch)
        if merged == current:
            return False
        self.store.state.patched[key] = merged
        shown = ", ".join(patched_fields(patch)) or "no fields"
        notes.append(f"would patch {key}: {shown} (no cluster)")
        return True
