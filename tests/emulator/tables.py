"""
Server-side printing: ``meta.k8s.io/v1`` Tables, as kube-apiserver answers
``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` (what ``kubectl get`` asks for).

Custom resources get a ``Name`` column plus the CRD's ``additionalPrinterColumns``
(evaluated with their JSONPath; ``date`` columns are rendered as ages like ``5m``; an
``Age`` column when the CRD declares none), as the apiextensions-apiserver does.
Built-in kinds get ``Name`` and ``Age`` (plus a few of kubectl's usual columns for
Pods, Jobs, Namespaces and Events) -- fewer columns than kube-apiserver prints.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tests.emulator import jsonpath

JsonDict = dict[str, Any]

_NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although"
    " some resources may allow a client to request the generation of an appropriate name"
    " automatically. Name is primarily intended for creation idempotence and configuration"
    " definition. Cannot be updated. More info:"
    " https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
_AGE_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created."
)


@dataclass(frozen=True)
class Column:
    """One printer column (``additionalPrinterColumns`` item)."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""

    @classmethod
    def from_crd(cls, column: Mapping[str, Any]) -> Column:
        return cls(
            name=str(column["name"]),
            type=str(column.get("type", "string")),
            json_path=str(column["jsonPath"]),
            description=str(column.get("description", "")),
            priority=int(column.get("priority", 0)),
            format=str(column.get("format", "")),
        )

    def definition(self) -> JsonDict:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


AGE = Column("Age", "date", ".metadata.creationTimestamp", _AGE_DESCRIPTION)

#: Extra columns of some built-in kinds (fewer than kube-apiserver's).
BUILTIN_COLUMNS: dict[tuple[str, str], tuple[Column, ...]] = {
    ("", "pods"): (Column("Status", "string", ".status.phase"), AGE),
    ("", "namespaces"): (Column("Status", "string", ".status.phase"), AGE),
    ("batch", "jobs"): (
        Column("Completions", "string", ".status.succeeded"),
        AGE,
    ),
    ("", "events"): (
        Column("Type", "string", ".type"),
        Column("Reason", "string", ".reason"),
        Column("Object", "string", ".involvedObject.name"),
        Column("Message", "string", ".message"),
        AGE,
    ),
}


def human_duration(seconds: float) -> str:
    """``k8s.io/apimachinery/pkg/util/duration.HumanDuration``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m" if rest == 0 else f"{minutes}m{rest}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h" if rest == 0 else f"{hours}h{rest}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rest = hours % 24
        return f"{hours // 24}d" if rest == 0 else f"{hours // 24}d{rest}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        rest = (hours // 24) % 365
        years = hours // 24 // 365
        return f"{years}y" if rest == 0 else f"{years}y{rest}d"
    return f"{hours // 24 // 365}y"


def _age(value: Any) -> Any:
    if not isinstance(value, str):
        return None
    try:
        then = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    now = datetime.datetime.now(tz=datetime.UTC)
    return human_duration((now - then).total_seconds())


def _go_print(value: Any) -> str:
    """A value as kubectl's JSONPath printer prints it (strings raw, others as JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


def cell(column: Column, obj: Mapping[str, Any]) -> Any:
    """The cell of ``column`` for ``obj`` (as ``cellForJSONValue``)."""
    try:
        values = jsonpath.find(obj, column.json_path)
    except jsonpath.JsonPathError:
        return None
    if not values:
        return None
    value = values[0]
    if value is None:
        return None
    match column.type:
        case "string":
            return _go_print(value)
        case "integer":
            return (
                int(value)
                if isinstance(value, (int, float)) and not isinstance(value, bool)
                else None
            )
        case "number":
            return (
                float(value)
                if isinstance(value, (int, float)) and not isinstance(value, bool)
                else None
            )
        case "boolean":
            return value if isinstance(value, bool) else None
        case "date":
            return _age(value)
    return None


def _row_object(obj: Mapping[str, Any], include: str) -> JsonDict | None:
    if include == "None":
        return None
    if include == "Object":
        return dict(obj)
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(obj.get("metadata") or {}),
    }


def table(
    objects: Iterable[Mapping[str, Any]],
    columns: Sequence[Column],
    *,
    resource_version: str = "",
    include_object: str = "PartialObjectMetadata",
    continue_token: str = "",
    remaining: int | None = None,
) -> JsonDict:
    """A ``meta.k8s.io/v1`` Table of ``objects`` with a Name column and ``columns``."""
    name_column = Column("Name", "string", ".metadata.name", _NAME_DESCRIPTION, 0, "name")
    definitions = [name_column.definition()] + [c.definition() for c in columns]
    rows = []
    for obj in objects:
        row: JsonDict = {"cells": [(obj.get("metadata") or {}).get("name")]}
        row["cells"] += [cell(c, obj) for c in columns]
        included = _row_object(obj, include_object)
        if included is not None:
            row["object"] = included
        rows.append(row)
    meta: JsonDict = {"resourceVersion": resource_version}
    if continue_token:
        meta["continue"] = continue_token
    if remaining:
        meta["remainingItemCount"] = remaining
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": definitions,
        "rows": rows,
    }


def wants_table(accept: str) -> bool:
    """Whether an Accept header asks for a meta.k8s.io Table (v1 or v1beta1)."""
    for part in accept.split(","):
        params = {
            p.strip().partition("=")[0]: p.strip().partition("=")[2] for p in part.split(";")[1:]
        }
        if params.get("as") == "Table" and params.get("g") == "meta.k8s.io":
            return True
    return False


def columns_for(
    crd_columns: Sequence[Column] | None, group: str, plural: str
) -> tuple[Column, ...]:
    """The columns of a resource: the CRD's (or Age), else the built-in ones (or Age)."""
    if crd_columns is not None:
        return tuple(crd_columns) or (AGE,)
    return BUILTIN_COLUMNS.get((group, plural), (AGE,))
