"""Validate a custom resource against its generated CRD only, the way kube-apiserver does.

This is the admission check of the test API emulator and the cluster-side half of
``kubetune validate``; it deliberately does not use the pydantic models. In order, like the API
server: unknown fields are reported (strict field validation), defaults are applied, then the
OpenAPI v3 structural schema is checked (types, enums, bounds, patterns, required, sizes) and
every ``x-kubernetes-validations`` CEL rule is evaluated at its node, with ``oldSelf`` bound for
transition rules on updates. Errors read like kube-apiserver's:
``spec.lora.r: Required value``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from datetime import datetime
from typing import Any

from kubetune.api.common import API_VERSION
from kubetune.api.kube import object_meta_errors

_OLD_SELF = re.compile(r"\boldSelf\b")
_MISSING = object()


@functools.cache
def _schemas() -> dict[str, dict[str, Any]]:
    from kubetune.schema.crd import generate_crds

    out = {}
    for crd in generate_crds().values():
        version = crd["spec"]["versions"][0]
        out[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]
    return out


@functools.cache
def _program(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def _render(value: Any) -> str:
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return json.dumps(value)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        # Beyond int64 a JSON number decodes as a float64 in the API server.
        return "integer" if -(2**63) <= value < 2**63 else "number"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def _type_ok(value: Any, expected: str) -> bool:
    actual = _json_type(value)
    return actual == expected or (expected == "number" and actual == "integer")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Walker:
    """One validation pass over an object; collects kube-apiserver style messages."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, path: str, text: str) -> None:
        self.errors.append(f"{path}: {text}")

    # --- unknown fields and defaults --------------------------------------------------------

    def prune(self, value: Any, schema: dict[str, Any], path: str) -> None:
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        if isinstance(value, dict) and schema.get("type") == "object":
            props = schema.get("properties")
            extra = schema.get("additionalProperties")
            for key, item in value.items():
                child = _join(path, key) if props is not None else f"{path}[{key}]"
                if props is not None and key in props:
                    self.prune(item, props[key], child)
                elif isinstance(extra, dict):
                    self.prune(item, extra, child)
                elif path != "metadata":
                    self.error(child, "Unknown field: field not declared in schema")
        elif isinstance(value, list) and "items" in schema:
            for i, item in enumerate(value):
                self.prune(item, schema["items"], f"{path}[{i}]")

    @staticmethod
    def apply_defaults(value: Any, schema: dict[str, Any]) -> None:
        if isinstance(value, dict) and schema.get("type") == "object":
            for key, prop in schema.get("properties", {}).items():
                if key in value and value[key] is None and not prop.get("nullable"):
                    del value[key]  # nulls of non-nullable fields are pruned, then defaulted
                if key not in value and "default" in prop:
                    value[key] = copy.deepcopy(prop["default"])
                if key in value:
                    _Walker.apply_defaults(value[key], prop)
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                for item in value.values():
                    _Walker.apply_defaults(item, extra)
        elif isinstance(value, list) and "items" in schema:
            for item in value:
                _Walker.apply_defaults(item, schema["items"])

    # --- OpenAPI schema -------------------------------------------------------------------

    def check(self, value: Any, schema: dict[str, Any], path: str) -> bool:
        """Check ``value`` against ``schema``; True when this subtree has no error."""
        before = len(self.errors)
        expected = schema.get("type")
        if schema.get("x-kubernetes-int-or-string"):
            if not isinstance(value, int | str) or isinstance(value, bool):
                self.error(path, f"Invalid value: {_render(value)}: must be an integer or string")
            return len(self.errors) == before
        if expected and not _type_ok(value, expected):
            shown = _json_type(value)
            self.error(
                path,
                f'Invalid value: "{shown}": {path} in body must be of type {expected}: "{shown}"',
            )
            return False
        if "enum" in schema and value not in schema["enum"]:
            supported = ", ".join(json.dumps(v) for v in schema["enum"])
            self.error(path, f"Unsupported value: {_render(value)}: supported values: {supported}")
        if isinstance(value, int | float) and not isinstance(value, bool):
            self._check_number(value, schema, path)
        elif isinstance(value, str):
            self._check_string(value, schema, path)
        elif isinstance(value, list):
            self._check_sizes(len(value), schema, path, "minItems", "maxItems", "items")
            if "items" in schema:
                for i, item in enumerate(value):
                    self.check(item, schema["items"], f"{path}[{i}]")
        elif isinstance(value, dict) and not schema.get("x-kubernetes-preserve-unknown-fields"):
            self._check_object(value, schema, path)
        if len(self.errors) == before:
            self.rules(value, schema, path)
        return len(self.errors) == before

    def _check_number(self, value: float, schema: dict[str, Any], path: str) -> None:
        if "minimum" in schema:
            low, strict = schema["minimum"], schema.get("exclusiveMinimum", False)
            if value < low or (strict and value == low):
                words = "greater than" if strict else "greater than or equal to"
                self.error(path, f"Invalid value: {value}: {path} in body should be {words} {low}")
        if "maximum" in schema:
            high, strict = schema["maximum"], schema.get("exclusiveMaximum", False)
            if value > high or (strict and value == high):
                words = "less than" if strict else "less than or equal to"
                self.error(path, f"Invalid value: {value}: {path} in body should be {words} {high}")

    def _check_string(self, value: str, schema: dict[str, Any], path: str) -> None:
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            self.error(path, f"Too long: may not be more than {schema['maxLength']} bytes")
        if "minLength" in schema and len(value) < schema["minLength"]:
            self.error(
                path,
                f"Invalid value: {_render(value)}: {path} in body should be at least "
                f"{schema['minLength']} chars long",
            )
        if "pattern" in schema and not re.search(schema["pattern"], value):
            self.error(
                path,
                f"Invalid value: {_render(value)}: {path} in body should match "
                f"'{schema['pattern']}'",
            )
        if schema.get("format") == "date-time":
            try:
                datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                self.error(
                    path,
                    f"Invalid value: {_render(value)}: {path} in body must be of type "
                    f"date-time: {_render(value)}",
                )

    def _check_sizes(
        self, size: int, schema: dict[str, Any], path: str, low: str, high: str, unit: str
    ) -> None:
        if high in schema and size > schema[high]:
            self.error(path, f"Too many: {size}: must have at most {schema[high]} {unit}")
        if low in schema and size < schema[low]:
            self.error(
                path,
                f"Invalid value: {size}: {path} in body should have at least {schema[low]} {unit}",
            )

    def _check_object(self, value: dict[str, Any], schema: dict[str, Any], path: str) -> None:
        props = schema.get("properties", {})
        for key in schema.get("required", []):
            if key not in value:
                self.error(_join(path, key), "Required value")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            self._check_sizes(len(value), schema, path, "minProperties", "maxProperties", "items")
        for key, item in value.items():
            if key in props:
                if path == "" and key == "metadata":
                    self._check_metadata(item)
                else:
                    self.check(item, props[key], _join(path, key))
            elif isinstance(extra, dict):
                self.check(item, extra, f"{path}[{key}]")

    def _check_metadata(self, meta: Any) -> None:
        if not isinstance(meta, dict):
            self.error("metadata", f"Invalid value: {_render(meta)}: must be an object")
            return
        for path, reason, detail in object_meta_errors(meta):
            self.error(path, f"{reason}: {detail}" if detail else reason)

    # --- CEL ------------------------------------------------------------------------------

    def rules(self, value: Any, schema: dict[str, Any], path: str, old: Any = _MISSING) -> None:
        for rule in schema.get("x-kubernetes-validations", []):
            transition = bool(_OLD_SELF.search(rule["rule"]))
            if transition and old is _MISSING:
                continue
            where = path + rule.get("fieldPath", "") if rule.get("fieldPath") else path
            outcome = evaluate_rule(rule["rule"], value, schema, old if transition else _MISSING)
            shown = f'"{_json_type(value)}"'
            if outcome is not True:
                detail = rule.get("message") or f"failed rule: {rule['rule']}"
                if isinstance(outcome, str):
                    detail = f"{outcome} evaluating rule: {rule['rule']}"
                self.error(where.lstrip(".") or "<root>", f"Invalid value: {shown}: {detail}")

    def transitions(self, new: Any, old: Any, schema: dict[str, Any], path: str) -> None:
        """Evaluate rules that use ``oldSelf`` where the old object has a correlated value."""
        if old is _MISSING or new is None:
            return
        rules = [
            r for r in schema.get("x-kubernetes-validations", []) if _OLD_SELF.search(r["rule"])
        ]
        if rules:
            self.rules(new, {"x-kubernetes-validations": rules}, path, old)
        if isinstance(new, dict) and isinstance(old, dict):
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for key, item in new.items():
                child_schema = props.get(key) if props else None
                if child_schema is None and isinstance(extra, dict):
                    child_schema = extra
                if child_schema is not None and key in old:
                    child = _join(path, key) if props else f"{path}[{key}]"
                    self.transitions(item, old[key], child_schema, child)


def to_cel(value: Any, schema: dict[str, Any]) -> Any:
    """A JSON value as a CEL value typed by its schema (numbers are doubles, as in Kubernetes)."""
    from celpy import celtypes
    from celpy.adapter import json_to_cel

    kind = schema.get("type")
    if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        return json_to_cel(value)
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return celtypes.MapType(
            {
                celtypes.StringType(k): to_cel(
                    v, props.get(k) or (extra if isinstance(extra, dict) else {})
                )
                for k, v in value.items()
            }
        )
    if isinstance(value, list):
        return celtypes.ListType([to_cel(v, schema.get("items", {})) for v in value])
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if kind == "number" and isinstance(value, int | float):
        return celtypes.DoubleType(float(value))
    return json_to_cel(value)


def evaluate_rule(rule: str, value: Any, schema: dict[str, Any], old: Any = _MISSING) -> bool | str:
    """True when the rule holds, False when it does not, a message when evaluation fails."""
    activation = {"self": to_cel(value, schema)}
    if old is not _MISSING:
        activation["oldSelf"] = to_cel(old, schema)
    try:
        result = _program(rule).evaluate(activation)
    except Exception as e:  # celpy raises for missing keys and type errors
        return str(e) or type(e).__name__
    if isinstance(result, Exception):
        return str(result) or type(result).__name__
    return bool(result)


def apply_crd_defaults(obj: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``obj`` with the CRD's defaults filled in, as the API server persists it."""
    schema = schema or _schemas().get(str(obj.get("kind")))
    body = copy.deepcopy(obj)
    if schema is not None:
        _Walker.apply_defaults(body, schema)
    return body


def validate_against_crd(
    obj: dict[str, Any],
    old: dict[str, Any] | None = None,
    schema: dict[str, Any] | None = None,
) -> list[str]:
    """Errors the API server would answer for creating (or updating ``old`` to) ``obj``.

    ``schema`` defaults to the generated CRD's openAPIV3Schema of the object's kind. Each error
    reads ``<field path>: <reason>[: <detail>]``.
    """
    if schema is None:
        if not isinstance(obj, dict):
            return [f"<root>: Invalid value: {_render(obj)}: must be an object"]
        if obj.get("apiVersion") != API_VERSION:
            return [
                f"apiVersion: Unsupported value: {_render(obj.get('apiVersion'))}: "
                f'supported values: "{API_VERSION}"'
            ]
        schema = _schemas().get(str(obj.get("kind")))
        if schema is None:
            supported = ", ".join(f'"{k}"' for k in _schemas())
            return [
                f"kind: Unsupported value: {_render(obj.get('kind'))}: "
                f"supported values: {supported}"
            ]
    walker = _Walker()
    walker.prune(obj, schema, "")
    body = copy.deepcopy(obj)
    walker.apply_defaults(body, schema)
    walker.check(body, schema, "")
    if old is not None and not walker.errors:
        previous = copy.deepcopy(old)
        walker.apply_defaults(previous, schema)
        walker.transitions(body, previous, schema, "")
    return walker.errors
