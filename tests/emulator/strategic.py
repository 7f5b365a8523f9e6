"""
Strategic merge patch (``application/strategic-merge-patch+json``) and an approximation of
server-side apply (``application/apply-patch+yaml``), for built-in kinds.

The patch strategies come from Kubernetes' OpenAPI definitions
(``x-kubernetes-patch-strategy`` and ``x-kubernetes-patch-merge-key``, as
:mod:`tests.emulator.builtins` loads them): lists of containers merge by ``name``,
ports by ``containerPort``, and so on; other lists are replaced. The directives that
kubectl sends are honoured: ``$patch: replace|delete|merge``, ``$retainKeys``,
``$setElementOrder/<field>`` and ``$deleteFromPrimitiveList/<field>``.

Custom resources have no strategic merge patch (kube-apiserver answers 415); for server-side
apply they merge lists by ``x-kubernetes-list-type: map`` keys from the CRD schema.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from tests.emulator import builtins

JsonDict = dict[str, Any]


class PatchError(ValueError):
    """The patch cannot be applied (answered as 422/400)."""


def _resolve(schema: Mapping[str, Any] | None) -> Mapping[str, Any]:
    if not schema:
        return {}
    ref = schema.get("$ref")
    if ref:
        return builtins.definitions().get(str(ref).rsplit("/", 1)[-1], {})
    return schema


def _prop(schema: Mapping[str, Any] | None, key: str) -> Mapping[str, Any] | None:
    target = _resolve(schema)
    props = target.get("properties") or {}
    if key in props:
        found: Mapping[str, Any] = props[key]
        return found
    additional = target.get("additionalProperties")
    return additional if isinstance(additional, Mapping) else None


def _items(schema: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    items = _resolve(schema).get("items")
    return items if isinstance(items, Mapping) else None


def root_schema(group: str, version: str, kind: str) -> Mapping[str, Any] | None:
    name = builtins.definition_name(group, version, kind)
    return {"$ref": f"#/$defs/{name}"} if name else None


def _strategy(schema: Mapping[str, Any] | None) -> tuple[list[str], str | None]:
    if not schema:
        return [], None
    strategies = str(schema.get("x-kubernetes-patch-strategy") or "").split(",")
    return [s for s in strategies if s], schema.get("x-kubernetes-patch-merge-key")


def strategic_merge(original: Any, patch: Any, schema: Mapping[str, Any] | None) -> Any:
    """Apply a strategic merge patch to a copy of ``original``."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    base = copy.deepcopy(dict(original)) if isinstance(original, Mapping) else {}
    return _merge_map(base, dict(patch), schema)


def _merge_map(original: JsonDict, patch: JsonDict, schema: Mapping[str, Any] | None) -> Any:
    directive = patch.pop("$patch", None)
    if directive == "replace":
        return {k: v for k, v in patch.items() if not k.startswith("$")}
    if directive == "delete":
        return None
    if directive not in (None, "merge"):
        raise PatchError(f"unknown patch type: {directive!r}")
    retain = patch.pop("$retainKeys", None)
    orders = {
        k[len("$setElementOrder/") :]: patch.pop(k)
        for k in list(patch)
        if k.startswith("$setElementOrder/")
    }
    deletions = {
        k[len("$deleteFromPrimitiveList/") :]: patch.pop(k)
        for k in list(patch)
        if k.startswith("$deleteFromPrimitiveList/")
    }
    for key, values in deletions.items():
        if isinstance(original.get(key), list):
            original[key] = [v for v in original[key] if v not in (values or [])]
    for key, value in patch.items():
        sub = _prop(schema, key)
        if value is None:
            original.pop(key, None)
            continue
        if isinstance(value, Mapping):
            current = original.get(key)
            merged = _merge_map(
                copy.deepcopy(dict(current)) if isinstance(current, Mapping) else {},
                dict(value),
                sub,
            )
            if merged is None:
                original.pop(key, None)
            else:
                original[key] = merged
        elif isinstance(value, list):
            original[key] = _merge_list(original.get(key), value, sub)
        else:
            original[key] = copy.deepcopy(value)
    for key, order in orders.items():
        if isinstance(original.get(key), list):
            original[key] = _reorder(original[key], order, _strategy(_prop(schema, key))[1])
    if isinstance(retain, list):
        for key in list(original):
            if key not in retain:
                del original[key]
    return original


def _merge_list(original: Any, patch: list[Any], schema: Mapping[str, Any] | None) -> list[Any]:
    strategies, merge_key = _strategy(schema)
    current = copy.deepcopy(original) if isinstance(original, list) else []
    if "merge" not in strategies:
        return [
            {k: v for k, v in item.items() if not k.startswith("$")}
            if isinstance(item, Mapping)
            else item
            for item in copy.deepcopy(patch)
        ]
    if merge_key is None:  # a list of scalars merged as a set
        for item in patch:
            if isinstance(item, Mapping) and item.get("$patch") == "replace":
                return []
            if item not in current:
                current.append(copy.deepcopy(item))
        return current
    items_schema = _items(schema)
    for item in patch:
        if not isinstance(item, Mapping):
            raise PatchError(f"the list items must be objects with the merge key {merge_key!r}")
        item = dict(item)
        if item.get("$patch") == "replace":
            return [
                {k: v for k, v in x.items() if k != "$patch"}
                for x in patch
                if isinstance(x, Mapping) and x.get("$patch") != "replace"
            ]
        key_value = item.get(merge_key)
        index = next(
            (
                i
                for i, x in enumerate(current)
                if isinstance(x, Mapping) and x.get(merge_key) == key_value
            ),
            None,
        )
        if item.get("$patch") == "delete":
            current = [
                x for x in current if not (isinstance(x, Mapping) and x.get(merge_key) == key_value)
            ]
            continue
        if index is None:
            merged = _merge_map({}, item, items_schema)
            if merged is not None:
                current.append(merged)
        else:
            merged = _merge_map(current[index], item, items_schema)
            if merged is None:
                del current[index]
            else:
                current[index] = merged
    return current


def _reorder(items: list[Any], order: Any, merge_key: str | None) -> list[Any]:
    if not isinstance(order, list):
        return items

    def identity(item: Any) -> Any:
        return item.get(merge_key) if merge_key and isinstance(item, Mapping) else item

    wanted = [identity(x) for x in order]
    ranked = [x for w in wanted for x in items if identity(x) == w]
    rest = [x for x in items if identity(x) not in wanted]
    return ranked + rest


# --------------------------------------------------------------------------------------------------
# Server-side apply (an approximation: no field ownership, no conflicts)
# --------------------------------------------------------------------------------------------------


def _list_keys(schema: Mapping[str, Any] | None) -> list[str]:
    target = _resolve(schema)
    if target.get("x-kubernetes-list-type") == "map":
        return list(target.get("x-kubernetes-list-map-keys") or [])
    strategies, merge_key = _strategy(target)
    return [merge_key] if merge_key and "merge" in strategies else []


def _crd_or_builtin_prop(schema: Mapping[str, Any] | None, key: str) -> Mapping[str, Any] | None:
    return _prop(schema, key)


def apply_merge(live: Any, applied: Any, previous: Any, schema: Mapping[str, Any] | None) -> Any:
    """Merge an applied configuration into the live object; fields that the previous
    apply (of the same manager) set and this one omits are removed."""
    if not isinstance(applied, Mapping):
        return copy.deepcopy(applied)
    result: JsonDict = copy.deepcopy(dict(live)) if isinstance(live, Mapping) else {}
    previous_map = previous if isinstance(previous, Mapping) else {}
    for key in previous_map:
        if key not in applied:
            result.pop(key, None)
    for key, value in applied.items():
        sub = _crd_or_builtin_prop(schema, key)
        if isinstance(value, Mapping):
            result[key] = apply_merge(result.get(key), value, previous_map.get(key), sub)
        elif isinstance(value, list):
            keys = _list_keys(sub)
            live_list = result.get(key)
            if keys and isinstance(live_list, list):
                previous_value = previous_map.get(key)
                previous_list: list[Any] = (
                    previous_value if isinstance(previous_value, list) else []
                )

                def identity(item: Any, keys: list[str] = keys) -> Any:
                    return tuple(item.get(k) for k in keys) if isinstance(item, Mapping) else item

                applied_ids = [identity(x) for x in value]
                dropped = {identity(x) for x in previous_list} - set(applied_ids)
                merged = [x for x in live_list if identity(x) not in dropped]
                for item in value:
                    index = next(
                        (i for i, x in enumerate(merged) if identity(x) == identity(item)), None
                    )
                    previous_item = next(
                        (x for x in previous_list if identity(x) == identity(item)), None
                    )
                    if index is None:
                        merged.append(copy.deepcopy(item))
                    else:
                        merged[index] = apply_merge(merged[index], item, previous_item, _items(sub))
                result[key] = merged
            else:
                result[key] = copy.deepcopy(value)
        else:
            result[key] = copy.deepcopy(value)
    return result
