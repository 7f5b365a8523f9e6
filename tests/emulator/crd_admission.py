"""
Admission of custom resources from the CustomResourceDefinition alone, as kube-apiserver does it.

:class:`CrdAdmission` takes an ``apiextensions.k8s.io/v1`` CRD dict and, for an object of
one of its versions, does what the apiextensions-apiserver does with a request body:

1. **pruning** of fields not declared in the structural ``openAPIV3Schema`` (kept under
   ``x-kubernetes-preserve-unknown-fields``; ``apiVersion``/``kind``/``metadata`` kept at the
   root and in ``x-kubernetes-embedded-resource`` objects); each pruned field is a warning
   (``unknown field "spec.foo"``), or a 400 with ``fieldValidation=Strict``;
2. **defaulting** (``default``), top-down, also for ``null`` in non-nullable fields;
3. **schema validation**: ``type`` (``nullable``, ``x-kubernetes-int-or-string``),
   ``required``, ``enum``, ``pattern``, ``minimum``/``maximum`` (and exclusive),
   ``multipleOf``, ``minLength``/``maxLength``, ``minItems``/``maxItems``, ``uniqueItems``,
   ``minProperties``/``maxProperties``, ``format`` (those kube-openapi checks),
   ``x-kubernetes-list-type`` (set/map), ``allOf``/``anyOf``/``oneOf``/``not``;
   the object metadata is checked like any object's (name, labels, annotations, ...);
4. **CEL rules** (``x-kubernetes-validations``): ``rule`` with ``self`` and, for transition
   rules, ``oldSelf`` (only on updates where the old value correlates, or always with
   ``optionalOldSelf``), ``message``, ``messageExpression``, ``fieldPath`` and ``reason``;
   skipped (with kube-apiserver's note) when a blocking schema error was found;
5. **ratcheting** (on by default since Kubernetes 1.30): on updates, errors in parts of
   the object that did not change are not reported.

Errors are worded like kube-apiserver's (``spec.lora.r: Required value``;
``spec.lora.r: Invalid value: "string": spec.lora.r in body must be of type integer: "string"``).

CEL is evaluated with the ``cel`` module of the ``common-expression-language`` package
(a Rust implementation, deliberately different from the ``celpy`` that kubetune uses
itself). Kubernetes' CEL extension libraries are partly covered: the ``cel.stdlib``
functions (strings, lists, math, sets); not ``quantity()``, ``url()``, ``isSorted()``,
``optional`` field syntax (``self.?x``) or cost limits. Unsupported functions show up
as errors evaluating the rule, never as silently admitted objects.

This module is an independent test oracle: it must not import the code under test.
"""

from __future__ import annotations

import base64
import copy
import datetime
import ipaddress
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cel
import cel.stdlib

from tests.emulator.apivalidation import (
    INVALID,
    TOO_MANY,
    FieldError,
    duplicate,
    forbidden,
    go_value,
    invalid,
    join_path,
    key_path,
    required,
    too_long,
    unsupported,
    validate_object_meta,
    validate_object_meta_update,
)

JsonDict = dict[str, Any]

_OBJECT_META_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)
_EMBEDDED_FIELDS = ("apiVersion", "kind", "metadata")
_CEL_BLOCKED = (
    "some validation rules were not checked because the object was invalid;"
    " correct the existing errors to complete validation"
)
_MISSING: Any = object()


def json_type(value: Any) -> str:
    """The JSON type name of a decoded value (as kube-openapi names it in errors)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _is_type(value: Any, type_: str) -> bool:
    match type_:
        case "object":
            return isinstance(value, Mapping)
        case "array":
            return isinstance(value, list)
        case "string":
            return isinstance(value, str)
        case "boolean":
            return isinstance(value, bool)
        case "integer":
            if isinstance(value, bool):
                return False
            return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
        case "number":
            return isinstance(value, (int, float)) and not isinstance(value, bool)
    return True


# --------------------------------------------------------------------------------------------------
# Formats (the ones kube-openapi's strfmt registry checks; unknown formats are ignored)
# --------------------------------------------------------------------------------------------------

_DATE_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d):([0-5]\d|60)(\.\d+)?(z|[+-]\d{2}:\d{2})$")
_HOSTNAME_RE = re.compile(
    r"^[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$"
)
_UUID_RE = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$", re.I)
_DURATION_RE = re.compile(
    r"^[-+]?((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h|d|w)\s*)+$|^(\d+)\s*(ns|us|ms|s|m|h|d|w)?$"
)


def _is_date(text: str) -> bool:
    m = _DATE_RE.match(text)
    if not m:
        return False
    try:
        datetime.date(int(m[1]), int(m[2]), int(m[3]))
    except ValueError:
        return False
    return True


def _is_date_time(text: str) -> bool:
    parts = text.lower().split("t")
    if len(parts) != 2 or not _is_date(parts[0]):
        return False
    return bool(_TIME_RE.match(parts[1]))


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return True


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def _is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


def _is_uuid(text: str) -> bool:
    if not _UUID_RE.match(text):
        return False
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


_FORMATS: dict[str, Callable[[str], bool]] = {
    "datetime": _is_date_time,
    "date": _is_date,
    "byte": _is_base64,
    "ipv4": lambda text: _is_ip(text, 4),
    "ipv6": lambda text: _is_ip(text, 6),
    "cidr": _is_cidr,
    "uuid": _is_uuid,
    "uuid3": _is_uuid,
    "uuid4": _is_uuid,
    "uuid5": _is_uuid,
    "mac": lambda text: bool(re.fullmatch(r"([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}", text)),
    "hostname": lambda text: len(text) <= 255 and bool(_HOSTNAME_RE.match(text)),
    "duration": lambda text: bool(_DURATION_RE.match(text)),
    "email": lambda text: bool(re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s]+", text)),
}


def _format_ok(format_: str, value: str) -> bool:
    check = _FORMATS.get(format_.replace("-", "").replace("_", "").lower())
    return check is None or check(value)


# --------------------------------------------------------------------------------------------------
# Pruning & defaulting
# --------------------------------------------------------------------------------------------------


def prune(
    value: Any, schema: Mapping[str, Any] | None, path: str = "", *, root: bool = False
) -> list[str]:
    """Drop the fields the structural schema does not declare (in place); their paths."""
    dropped: list[str] = []
    if schema is None:
        return dropped
    if isinstance(value, dict):
        embedded = root or bool(schema.get("x-kubernetes-embedded-resource"))
        props: Mapping[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        for key in list(value):
            here = join_path(path, key)
            if key in props:
                if embedded and key == "metadata" and isinstance(value[key], dict):
                    dropped.extend(_prune_metadata(value[key], here))
                else:
                    dropped.extend(prune(value[key], props[key], here))
            elif isinstance(additional, Mapping):
                dropped.extend(prune(value[key], additional, key_path(path, key)))
            elif embedded and key in _EMBEDDED_FIELDS:
                if key == "metadata" and isinstance(value[key], dict):
                    dropped.extend(_prune_metadata(value[key], here))
            elif additional is True or preserve:
                continue
            else:
                del value[key]
                dropped.append(here)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for index, item in enumerate(value):
                dropped.extend(prune(item, items, join_path(path, index)))
    return dropped


def _prune_metadata(meta: JsonDict, path: str) -> list[str]:
    dropped = []
    for key in list(meta):
        if key not in _OBJECT_META_FIELDS:
            del meta[key]
            dropped.append(join_path(path, key))
    return dropped


def apply_defaults(value: Any, schema: Mapping[str, Any] | None) -> None:
    """Apply ``default`` values top-down (in place), as ``structuraldefaulting.Default``."""
    if schema is None:
        return
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties") or {}
        for key, prop in props.items():
            if "default" not in prop:
                continue
            if key not in value or (value[key] is None and not prop.get("nullable")):
                value[key] = copy.deepcopy(prop["default"])
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            if key in props:
                apply_defaults(child, props[key])
            elif isinstance(additional, Mapping):
                apply_defaults(child, additional)
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for item in value:
                apply_defaults(item, items)


# --------------------------------------------------------------------------------------------------
# CEL
# --------------------------------------------------------------------------------------------------


@dataclass
class _CompiledRule:
    rule: str
    message: str
    reason: str | None
    field_path: str
    optional_old_self: bool
    program: Any = None
    message_program: Any = None
    compile_error: str = ""

    @property
    def transition(self) -> bool:
        return self.program is not None and "oldSelf" in self.program.variables()


_RULE_CACHE: dict[str, tuple[Any, str]] = {}


def _compile(source: str) -> tuple[Any, str]:
    if source not in _RULE_CACHE:
        try:
            _RULE_CACHE[source] = (cel.compile(source), "")
        except (ValueError, RuntimeError) as e:
            _RULE_CACHE[source] = (None, str(e).splitlines()[0])
    return _RULE_CACHE[source]


def _compile_rule(spec: Mapping[str, Any]) -> _CompiledRule:
    rule = str(spec.get("rule", ""))
    program, error = _compile(rule)
    compiled = _CompiledRule(
        rule=rule,
        message=str(spec.get("message") or ""),
        reason=spec.get("reason"),
        field_path=str(spec.get("fieldPath") or ""),
        optional_old_self=bool(spec.get("optionalOldSelf")),
        program=program,
        compile_error=error,
    )
    if spec.get("messageExpression"):
        compiled.message_program, _ = _compile(str(spec["messageExpression"]))
    return compiled


def to_cel(value: Any, schema: Mapping[str, Any] | None) -> Any:
    """A JSON value as Kubernetes presents it to CEL: typed by the schema."""
    if schema is None or value is None:
        return value
    type_ = schema.get("type")
    if isinstance(value, dict):
        props: Mapping[str, Any] = schema.get("properties") or {}
        additional = schema.get("additionalProperties")
        return {
            key: to_cel(
                child, props.get(key, additional if isinstance(additional, Mapping) else None)
            )
            for key, child in value.items()
        }
    if isinstance(value, list):
        items = schema.get("items")
        return [to_cel(item, items if isinstance(items, Mapping) else None) for item in value]
    if type_ == "number" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if type_ == "integer" and isinstance(value, float) and value.is_integer():
        return int(value)
    if type_ == "string" and isinstance(value, str):
        fmt = str(schema.get("format", "")).replace("-", "").lower()
        if fmt == "datetime" and _is_date_time(value):
            try:
                return datetime.datetime.fromisoformat(
                    value.replace("z", "Z").replace("Z", "+00:00")
                )
            except ValueError:
                return value
    return value


def _cel_error_text(error: Exception) -> str:
    if isinstance(error, KeyError):
        return f"no such key: {error.args[0] if error.args else ''}"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, TypeError) and text.lower().startswith("no such overload"):
        return "no such overload"
    return text


def _cel_context(variables: Mapping[str, Any]) -> Any:
    context = cel.Context()
    cel.stdlib.add_stdlib_to_context(context)
    for name, value in variables.items():
        context.add_variable(name, value)
    return context


def _field_path_suffix(base: str, field_path: str) -> str:
    """Append a rule's ``fieldPath`` (``.a.b``, ``.a['b.c']``, ``.list[0]``) to ``base``."""
    path = base
    for m in re.finditer(r"\.([A-Za-z_][A-Za-z0-9_]*)|\['([^']*)'\]|\[(\d+)\]", field_path):
        if m[1] is not None:
            path = join_path(path, m[1])
        elif m[2] is not None:
            path = key_path(path, m[2])
        else:
            path = join_path(path, int(m[3]))
    return path


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


@dataclass
class _RuleSite:
    schema: Mapping[str, Any]
    value: Any
    old: Any  # _MISSING when there is no correlated old value
    path: str


@dataclass
class _Walk:
    errors: list[FieldError] = field(default_factory=list)
    sites: list[_RuleSite] = field(default_factory=list)


def _list_map_key(item: Any, keys: Sequence[str]) -> tuple[Any, ...] | None:
    if not isinstance(item, Mapping):
        return None
    return tuple(json.dumps(item.get(key), sort_keys=True) for key in keys)


def _validate(
    value: Any,
    schema: Mapping[str, Any],
    path: str,
    old: Any,
    walk: _Walk,
    *,
    root: bool = False,
) -> None:
    if old is not _MISSING and old == value:
        return  # ratcheting: an unchanged part of the object is not re-validated
    errors = walk.errors
    name = path or "<root>"
    type_ = schema.get("type")

    if value is None:
        if schema.get("nullable") or (
            not type_ and schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            return
        if type_ or schema.get("x-kubernetes-int-or-string"):
            shown = type_ or "integer-or-string"
            errors.append(
                FieldError(
                    path, INVALID, "null", f'{name} in body must be of type {shown}: "null"', True
                )
            )
            return
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, (int, str)) and not isinstance(value, bool)):
            actual = json_type(value)
            errors.append(
                FieldError(
                    path,
                    INVALID,
                    actual,
                    f'{name} in body must be of type integer-or-string: "{actual}"',
                    True,
                )
            )
            return
    elif type_ and not _is_type(value, type_):
        actual = json_type(value)
        errors.append(
            FieldError(
                path, INVALID, actual, f'{name} in body must be of type {type_}: "{actual}"', True
            )
        )
        return

    if "enum" in schema and value not in schema["enum"]:
        errors.append(unsupported(path, value, schema["enum"]))
    if isinstance(value, str):
        _validate_string(value, schema, path, name, errors)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _validate_number(value, schema, path, name, errors)
    elif isinstance(value, list):
        _validate_list(value, schema, path, name, old, walk)
    elif isinstance(value, dict):
        _validate_object(value, schema, path, name, old, walk, root=root)

    for sub in schema.get("allOf") or []:
        _validate(value, sub, path, _MISSING, walk)
    if schema.get("anyOf") and not any(_quiet_ok(value, sub) for sub in schema["anyOf"]):
        errors.append(
            invalid(path, value, f"{name} in body must be valid against any of the schemas")
        )
    if schema.get("oneOf"):
        matching = sum(_quiet_ok(value, sub) for sub in schema["oneOf"])
        if matching != 1:
            errors.append(
                invalid(
                    path, value, f"{name} in body must validate one and only one schema (oneOf)"
                )
            )
    if isinstance(schema.get("not"), Mapping) and _quiet_ok(value, schema["not"]):
        errors.append(invalid(path, value, f"{name} in body must not be valid against the schema"))

    if schema.get("x-kubernetes-validations"):
        walk.sites.append(_RuleSite(schema, value, old, path))


def _quiet_ok(value: Any, schema: Mapping[str, Any]) -> bool:
    probe = _Walk()
    _validate(value, schema, "", _MISSING, probe)
    return not probe.errors


def _validate_string(
    value: str, schema: Mapping[str, Any], path: str, name: str, errors: list[FieldError]
) -> None:
    length = len(value)
    if "maxLength" in schema and length > schema["maxLength"]:
        errors.append(too_long(path, int(schema["maxLength"])))
    if "minLength" in schema and length < schema["minLength"]:
        detail = f"{name} in body should be at least {schema['minLength']} chars long"
        errors.append(invalid(path, value, detail))
    pattern = schema.get("pattern")
    if pattern and not re.search(pattern, value):
        errors.append(invalid(path, value, f"{name} in body should match '{pattern}'"))
    fmt = schema.get("format")
    if fmt and not _format_ok(str(fmt), value):
        detail = f"{name} in body must be of type {fmt}: {go_value(value)}"
        errors.append(FieldError(path, INVALID, value, detail, True))


def _validate_number(
    value: float, schema: Mapping[str, Any], path: str, name: str, errors: list[FieldError]
) -> None:
    if "minimum" in schema:
        low = schema["minimum"]
        if schema.get("exclusiveMinimum") and value <= low:
            errors.append(
                invalid(path, value, f"{name} in body should be greater than {go_value(low)}")
            )
        elif value < low:
            detail = f"{name} in body should be greater than or equal to {go_value(low)}"
            errors.append(invalid(path, value, detail))
    if "maximum" in schema:
        high = schema["maximum"]
        if schema.get("exclusiveMaximum") and value >= high:
            errors.append(
                invalid(path, value, f"{name} in body should be less than {go_value(high)}")
            )
        elif value > high:
            detail = f"{name} in body should be less than or equal to {go_value(high)}"
            errors.append(invalid(path, value, detail))
    if schema.get("multipleOf"):
        factor = schema["multipleOf"]
        quotient = value / factor
        if abs(quotient - round(quotient)) > 1e-9:
            detail = f"{name} in body should be a multiple of {go_value(factor)}"
            errors.append(invalid(path, value, detail))


def _validate_list(
    value: list[Any],
    schema: Mapping[str, Any],
    path: str,
    name: str,
    old: Any,
    walk: _Walk,
) -> None:
    errors = walk.errors
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        errors.append(
            FieldError(path, TOO_MANY, len(value), f"must have at most {schema['maxItems']} items")
        )
    if "minItems" in schema and len(value) < schema["minItems"]:
        detail = f"{name} in body should have at least {schema['minItems']} items"
        errors.append(invalid(path, len(value), detail))
    list_type = schema.get("x-kubernetes-list-type")
    keys = list(schema.get("x-kubernetes-list-map-keys") or [])
    if schema.get("uniqueItems") or list_type == "set":
        seen: list[Any] = []
        for index, item in enumerate(value):
            if item in seen:
                errors.append(duplicate(join_path(path, index), item))
            seen.append(item)
    old_by_key: dict[tuple[Any, ...], Any] = {}
    if list_type == "map" and keys:
        seen_keys: set[tuple[Any, ...]] = set()
        for index, item in enumerate(value):
            key = _list_map_key(item, keys)
            if key is None:
                continue
            if key in seen_keys:
                shown = {k: item.get(k) for k in keys}
                errors.append(duplicate(join_path(path, index), shown))
            seen_keys.add(key)
        if isinstance(old, list):
            for item in old:
                key = _list_map_key(item, keys)
                if key is not None:
                    old_by_key[key] = item
    items = schema.get("items")
    if isinstance(items, Mapping):
        for index, item in enumerate(value):
            old_item = _MISSING
            if old_by_key:
                old_item = old_by_key.get(_list_map_key(item, keys) or (), _MISSING)
            _validate(item, items, join_path(path, index), old_item, walk)


def _validate_object(
    value: Mapping[str, Any],
    schema: Mapping[str, Any],
    path: str,
    name: str,
    old: Any,
    walk: _Walk,
    *,
    root: bool,
) -> None:
    errors = walk.errors
    old_map = old if isinstance(old, Mapping) else {}
    for key in schema.get("required") or []:
        if key not in value:
            errors.append(required(join_path(path, key)))
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        errors.append(
            FieldError(
                path, TOO_MANY, len(value), f"must have at most {schema['maxProperties']} items"
            )
        )
    if "minProperties" in schema and len(value) < schema["minProperties"]:
        detail = f"{name} in body should have at least {schema['minProperties']} properties"
        errors.append(invalid(path, len(value), detail))
    props: Mapping[str, Any] = schema.get("properties") or {}
    additional = schema.get("additionalProperties")
    embedded = root or bool(schema.get("x-kubernetes-embedded-resource"))
    for key, child in value.items():
        old_child = old_map.get(key, _MISSING) if isinstance(old, Mapping) else _MISSING
        if embedded and key == "metadata" and not root and isinstance(child, Mapping):
            errors.extend(
                validate_object_meta(child, namespaced=False, path=join_path(path, key))
                if child.get("name") or child.get("generateName")
                else []
            )
        if key in props:
            if root and key == "metadata":
                continue  # the object's metadata: see CrdAdmission.validate
            _validate(child, props[key], join_path(path, key), old_child, walk)
        elif isinstance(additional, Mapping):
            _validate(child, additional, key_path(path, key), old_child, walk)


def _evaluate_rules(site: _RuleSite, is_update: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    schema_type = str(site.schema.get("type") or "")
    value = to_cel(site.value, site.schema)
    old_value = to_cel(site.old, site.schema) if site.old is not _MISSING else _MISSING
    for spec in site.schema.get("x-kubernetes-validations") or []:
        rule = _compile_rule(spec)
        if rule.program is None:
            errors.append(
                invalid(
                    site.path,
                    schema_type,
                    f"compilation failed: {rule.compile_error} evaluating rule: {rule.rule}",
                )
            )
            continue
        variables: dict[str, Any] = {"self": value}
        if rule.transition:
            if rule.optional_old_self:
                variables["oldSelf"] = (
                    cel.OptionalValue.of(old_value)
                    if old_value is not _MISSING
                    else cel.OptionalValue.none()
                )
            elif old_value is _MISSING or not is_update:
                continue  # transition rules run only on updates with a correlated old value
            else:
                variables["oldSelf"] = old_value
        try:
            result = rule.program.execute(_cel_context(variables))
        except Exception as e:  # any runtime error of the rule is reported, as by the server
            text = _cel_error_text(e)
            where = rule.message.strip() or rule.rule.strip()
            if text == "no such overload":
                detail = (
                    f"'{text}': call arguments did not match a supported operator, function or"
                    f" macro signature for rule: {where}"
                )
            else:
                detail = f"{text} evaluating rule: {where}"
            errors.append(invalid(site.path, schema_type, detail))
            continue
        if result is True:
            continue
        message = rule.message or f"failed rule: {rule.rule.strip()}"
        if rule.message_program is not None:
            try:
                custom = rule.message_program.execute(_cel_context(variables))
            except Exception:
                custom = None
            if isinstance(custom, str) and custom.strip() and "\n" not in custom:
                message = custom
        target = _field_path_suffix(site.path, rule.field_path) if rule.field_path else site.path
        match rule.reason:
            case "FieldValueForbidden":
                errors.append(forbidden(target, message))
            case "FieldValueRequired":
                errors.append(required(target, message))
            case "FieldValueDuplicate":
                errors.append(duplicate(target, schema_type))
            case _:
                errors.append(invalid(target, schema_type, message))
    return errors


def _has_rules(schema: Any) -> bool:
    if isinstance(schema, Mapping):
        if schema.get("x-kubernetes-validations"):
            return True
        return any(_has_rules(value) for key, value in schema.items() if key != "default")
    if isinstance(schema, list):
        return any(_has_rules(item) for item in schema)
    return False


# --------------------------------------------------------------------------------------------------
# The admission of one CRD's objects
# --------------------------------------------------------------------------------------------------


@dataclass
class Admitted:
    """The result of :meth:`CrdAdmission.admit`."""

    object: JsonDict
    warnings: list[str] = field(default_factory=list)  # "unknown field \"spec.foo\""
    unknown_fields: list[str] = field(default_factory=list)
    errors: list[FieldError] = field(default_factory=list)


class CrdAdmission:
    """Prune, default and validate the objects of one CRD (see the module docstring)."""

    def __init__(self, crd: Mapping[str, Any]) -> None:
        spec = crd["spec"]
        self.crd = crd
        self.group: str = spec["group"]
        self.kind: str = spec["names"]["kind"]
        self.plural: str = spec["names"]["plural"]
        self.namespaced = spec.get("scope", "Namespaced") == "Namespaced"
        self.schemas: dict[str, JsonDict] = {}
        for version in spec.get("versions", []):
            schema = ((version.get("schema") or {}).get("openAPIV3Schema")) or {
                "type": "object",
                "x-kubernetes-preserve-unknown-fields": True,
            }
            self.schemas[version["name"]] = schema

    def schema_for(self, obj_or_version: Mapping[str, Any] | str) -> JsonDict:
        if isinstance(obj_or_version, str):
            version = obj_or_version
        else:
            version = str(obj_or_version.get("apiVersion", "")).rpartition("/")[2]
        if version not in self.schemas:
            raise KeyError(f"{self.group}/{version} is not a version of {self.kind}")
        return self.schemas[version]

    def prepare(self, obj: JsonDict, version: str | None = None) -> list[str]:
        """Prune (in place) and default ``obj``; return the paths of the pruned fields."""
        schema = self.schema_for(version or obj)
        dropped = prune(obj, schema, root=True)
        apply_defaults(obj, schema)
        return dropped

    def validate(
        self,
        obj: Mapping[str, Any],
        old: Mapping[str, Any] | None = None,
        version: str | None = None,
    ) -> list[FieldError]:
        """Schema validation and CEL rules (with ratcheting against ``old`` on updates)."""
        schema = self.schema_for(version or obj)
        meta = obj.get("metadata") or {}
        errors: list[FieldError] = []
        if isinstance(meta, Mapping):
            errors.extend(validate_object_meta(meta, namespaced=self.namespaced))
            if old is not None:
                errors.extend(validate_object_meta_update(meta, old.get("metadata") or {}))
            meta_schema = (schema.get("properties") or {}).get("metadata")
            if isinstance(meta_schema, Mapping):
                # the CRD may restrict metadata.name / generateName (nothing else is allowed)
                for key in ("name", "generateName"):
                    sub = (meta_schema.get("properties") or {}).get(key)
                    if isinstance(sub, Mapping) and key in meta:
                        probe = _Walk()
                        _validate(meta[key], sub, f"metadata.{key}", _MISSING, probe)
                        errors.extend(probe.errors)
        walk = _Walk()
        _validate(obj, schema, "", old if old is not None else _MISSING, walk, root=True)
        errors.extend(walk.errors)
        if any(error.blocking for error in errors):
            if _has_rules(schema):  # the server notes it only where there are rules to skip
                errors.append(invalid("", None, _CEL_BLOCKED))
            return errors
        for site in walk.sites:
            errors.extend(_evaluate_rules(site, old is not None))
        return errors

    def admit(
        self,
        obj: Mapping[str, Any],
        old: Mapping[str, Any] | None = None,
    ) -> Admitted:
        """Prune, default and validate a copy of ``obj`` (``old`` on updates)."""
        new = copy.deepcopy(dict(obj))
        dropped = self.prepare(new)
        old_copy = None
        if old is not None:
            old_copy = copy.deepcopy(dict(old))
            try:
                self.prepare(old_copy, str(new.get("apiVersion", "")).rpartition("/")[2])
            except KeyError:
                old_copy = None
        errors = self.validate(new, old_copy)
        return Admitted(
            object=new,
            warnings=[f'unknown field "{path}"' for path in dropped],
            unknown_fields=dropped,
            errors=errors,
        )


class CrdAdmissionRegistry:
    """The :class:`CrdAdmission` of several CRDs, found by an object's apiVersion & kind."""

    def __init__(self, crds: Sequence[Mapping[str, Any]] = ()) -> None:
        self.by_kind: dict[tuple[str, str], CrdAdmission] = {}
        for crd in crds:
            self.add(crd)

    def add(self, crd: Mapping[str, Any]) -> CrdAdmission:
        admission = CrdAdmission(crd)
        self.by_kind[(admission.group, admission.kind)] = admission
        return admission

    def __iter__(self) -> Iterator[CrdAdmission]:
        return iter(self.by_kind.values())

    def find(self, obj: Mapping[str, Any]) -> CrdAdmission | None:
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        return self.by_kind.get((group, str(obj.get("kind", ""))))

    def __call__(self, new: JsonDict, old: JsonDict | None) -> list[str]:
        """An ``AdmissionHook``: the errors (as strings) of ``new`` (defaulted & pruned)."""
        admission = self.find(new)
        if admission is None:
            return []
        return [str(error) for error in admission.admit(new, old).errors]


def admission_for(crds: Sequence[Mapping[str, Any]]) -> CrdAdmissionRegistry:
    """An admission hook (``hook(new, old) -> [errors]``) that checks objects of ``crds``."""
    return CrdAdmissionRegistry(crds)
