"""Status writes: what to write (merged with conditions owned by others) and when.

The planner returns the whole desired status. Before writing it, conditions of types the operator
does not manage are carried over from the live object, so another controller's conditions are
never clobbered. The write is a JSON patch of ``/status`` guarded by a ``test`` of the
resourceVersion the status was computed from: a concurrent writer makes it fail (409/422) and the
reconciler recomputes from the newer object instead of overwriting it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from kubetune.api.kinds import KIND_INFO

# Condition types the planners write; any other type belongs to someone else.
MANAGED_CONDITIONS = frozenset(
    {
        "Ready",
        "Succeeded",
        "Waiting",
        "Running",
        "Passed",
        "Cycling",
        "Reconciling",
        "Stalled",
        "Serving",  # spec.publish.kserve (plan/serving.py)
    }
)
INVALID_SPEC = "InvalidSpec"
CHILD_REJECTED = "ChildRejected"


def rejected_generation(body: Mapping[str, Any]) -> bool:
    """Whether the API server refused a child of the current generation (status says so)."""
    kind = str(body.get("kind"))
    info = KIND_INFO.get(kind)
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation") or 1
    if info is None or status.get("phase") != "Failed":
        return False
    done = next(
        (c for c in status.get("conditions") or [] if c.get("type") == info.done_condition), None
    )
    return bool(
        done
        and done.get("reason") == CHILD_REJECTED
        and done.get("observedGeneration") == generation
    )


def _compact(status: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (status or {}).items() if v is not None}


def merged_status(desired: Mapping[str, Any], current: Mapping[str, Any] | None) -> dict[str, Any]:
    """The desired status plus the current conditions of types the operator does not manage."""
    managed = MANAGED_CONDITIONS | {c.get("type") for c in desired.get("conditions") or []}
    foreign = [c for c in (current or {}).get("conditions") or [] if c.get("type") not in managed]
    out = _compact(desired)
    out["conditions"] = [*(desired.get("conditions") or []), *foreign]
    return out


def differs(desired: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
    """Whether writing ``desired`` would change the stored status."""
    return _compact(desired) != _compact(current)


def status_ops(status: Mapping[str, Any], resource_version: str | None) -> list[dict[str, Any]]:
    """A JSON patch replacing the status, valid only against ``resource_version``."""
    ops: list[dict[str, Any]] = []
    if resource_version:
        ops.append({"op": "test", "path": "/metadata/resourceVersion", "value": resource_version})
    ops.append({"op": "add", "path": "/status", "value": dict(status)})
    return ops


def validation_message(exc: ValidationError) -> str:
    """Field paths and messages of a validation error, like kube-apiserver words them."""
    parts = []
    for error in exc.errors():
        path = ".".join(str(p) for p in error["loc"])
        parts.append(f"{path}: {error['msg']}" if path else str(error["msg"]))
    return "; ".join(parts)


def invalid_spec_status(
    body: Mapping[str, Any], message: str, now: datetime, reason: str = INVALID_SPEC
) -> dict[str, Any]:
    """Status of a resource whose spec cannot be read (or whose child the API server refused,
    reason ``ChildRejected``): Failed, done condition with the reason."""
    kind = str(body["kind"])
    done_type = KIND_INFO[kind].done_condition
    generation = (body.get("metadata") or {}).get("generation") or 1
    current = dict(body.get("status") or {})
    old = next((c for c in current.get("conditions") or [] if c.get("type") == done_type), None)
    since = old.get("lastTransitionTime") if old and old.get("status") == "False" else None
    done = {
        "type": done_type,
        "status": "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": since or now.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")

    def cond(type_: str, status: str, text: str = "") -> dict[str, Any]:
        before = next((c for c in current.get("conditions") or [] if c.get("type") == type_), None)
        same = before is not None and before.get("status") == status
        return {
            "type": type_,
            "status": status,
            "reason": reason,
            "message": text,
            "observedGeneration": generation,
            "lastTransitionTime": (before or {}).get("lastTransitionTime") if same else stamp,
        }

    # kstatus: Stalled (Flux and `kubectl wait` see a failure, not a reconciliation in progress).
    kstatus = [cond("Reconciling", "False"), cond("Stalled", "True", message)]
    if done_type != "Ready":
        kstatus.append(cond("Ready", "False", message))
    replaced = {done_type, *(c["type"] for c in kstatus)}
    others = [c for c in current.get("conditions") or [] if c.get("type") not in replaced]
    return {
        **current,
        "phase": "Failed",
        "observedGeneration": generation,
        "message": message,
        "conditions": [done, *kstatus, *others],
    }
