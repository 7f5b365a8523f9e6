"""
Pure helpers of the API emulator: selectors, patches, timestamps, Status bodies.

Nothing here knows about HTTP or the object store; everything is a plain
function over JSON-like dicts, so it is easy to unit-test and to reuse
from the kubelet helpers.
"""

from __future__ import annotations

import copy
import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

JsonDict = dict[str, Any]


class ApiError(Exception):
    """An error answered as a ``metav1.Status`` body with an HTTP status code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details: JsonDict = dict(details or {})
        self.headers: dict[str, str] = dict(headers or {})
        self.is_injected = False

    def injected(self) -> ApiError:
        """Mark the error as injected by a test's fault (not a real refusal); return it."""
        self.is_injected = True
        return self

    def as_status(self) -> JsonDict:
        """Render the error as kube-apiserver does: a ``kind: Status`` object."""
        body: JsonDict = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def now_rfc3339() -> str:
    """The current UTC time as Kubernetes prints it (seconds precision, ``Z`` suffix)."""
    return datetime.datetime.now(tz=datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------------
# Label selectors
# --------------------------------------------------------------------------------------------------

_SET_RE = re.compile(r"^(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_EQ_RE = re.compile(r"^(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<value>[^\s!=(),]*)$")
_NOT_RE = re.compile(r"^!\s*(?P<key>[^\s!=()]+)$")
_KEY_RE = re.compile(r"^(?P<key>[^\s!=()]+)$")


def _split_top_level(text: str) -> list[str]:
    """Split by commas that are not inside parentheses: ``a in (x,y),b`` -> 2 terms."""
    terms: list[str] = []
    depth = 0
    current: list[str] = []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append("".join(current))
            current = []
        else:
            current.append(char)
    terms.append("".join(current))
    return [term.strip() for term in terms if term.strip()]


@dataclass(frozen=True)
class LabelRequirement:
    """One term of a label selector, e.g. ``env in (dev,prod)``."""

    key: str
    op: str  # one of: =, !=, in, notin, exists, !exists
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=":
                return present and value in self.values
            case "!=":
                return not present or value not in self.values
            case "in":
                return present and value in self.values
            case "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case "!exists":
                return not present
        raise AssertionError(f"unknown operator {self.op!r}")  # pragma: no cover


@dataclass(frozen=True)
class LabelSelector:
    """A parsed ``labelSelector=`` query (all requirements must match)."""

    requirements: tuple[LabelRequirement, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> LabelSelector:
        """Parse the selector syntax of kubectl/kube-apiserver; raise ``ValueError`` if bad."""
        requirements: list[LabelRequirement] = []
        for term in _split_top_level(text or ""):
            if m := _SET_RE.match(term):
                values = frozenset(v.strip() for v in m["values"].split(",") if v.strip())
                requirements.append(LabelRequirement(m["key"], m["op"], values))
            elif m := _NOT_RE.match(term):
                requirements.append(LabelRequirement(m["key"], "!exists"))
            elif m := _EQ_RE.match(term):
                op = "!=" if m["op"] == "!=" else "="
                requirements.append(LabelRequirement(m["key"], op, frozenset({m["value"]})))
            elif m := _KEY_RE.match(term):
                requirements.append(LabelRequirement(m["key"], "exists"))
            else:
                raise ValueError(f"unable to parse requirement: {term!r}")
        return cls(tuple(requirements))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(req.matches(labels) for req in self.requirements)


def match_labels(selector: Mapping[str, Any] | None, obj: Mapping[str, Any]) -> bool:
    """Match a structured ``metav1.LabelSelector`` (matchLabels + matchExpressions)."""
    if selector is None:
        return False
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
    for expr in selector.get("matchExpressions") or []:
        req = LabelRequirement(
            expr["key"], ops[expr["operator"]], frozenset(expr.get("values", []))
        )
        if not req.matches(labels):
            return False
    return True


# --------------------------------------------------------------------------------------------------
# Field selectors
# --------------------------------------------------------------------------------------------------


def get_path(obj: Mapping[str, Any], dotted: str) -> Any:
    """Resolve ``a.b.c`` in nested dicts; ``None`` if any step is absent."""
    value: Any = obj
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


@dataclass(frozen=True)
class FieldSelector:
    """A parsed ``fieldSelector=`` query: ``metadata.name=x,status.phase!=Failed``."""

    terms: tuple[tuple[str, bool, str], ...] = ()  # (path, equal?, value)

    @classmethod
    def parse(cls, text: str | None) -> FieldSelector:
        terms: list[tuple[str, bool, str]] = []
        for term in _split_top_level(text or ""):
            m = re.match(r"^([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*)$", term)
            if not m:
                raise ValueError(f"invalid field selector: {term!r}")
            terms.append((m[1], m[2] != "!=", m[3].strip()))
        return cls(tuple(terms))

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for path, equal, expected in self.terms:
            actual = get_path(obj, path)
            if isinstance(actual, bool):
                actual_str = "true" if actual else "false"
            else:
                actual_str = "" if actual is None else str(actual)
            if (actual_str == expected) != equal:
                return False
        return True


# --------------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply a JSON merge-patch (RFC 7386); ``None`` values delete keys. Returns a new value."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result: JsonDict = copy.deepcopy(dict(target)) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class JsonPatchError(ValueError):
    """A JSON-patch (RFC 6902) operation cannot be applied; answered as 422."""


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise JsonPatchError(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str]) -> Any:
    for part in parts:
        if isinstance(doc, dict):
            if part not in doc:
                raise JsonPatchError(f"path not found: /{'/'.join(parts)}")
            doc = doc[part]
        elif isinstance(doc, list):
            try:
                doc = doc[int(part)]
            except (ValueError, IndexError):
                raise JsonPatchError(f"invalid list index: {part!r}") from None
        else:
            raise JsonPatchError(f"cannot traverse into a scalar at {part!r}")
    return doc


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return copy.deepcopy(value)
    parent = _walk(doc, parts[:-1])
    key = parts[-1]
    if isinstance(parent, dict):
        parent[key] = copy.deepcopy(value)
    elif isinstance(parent, list):
        index = len(parent) if key == "-" else int(key)
        if not 0 <= index <= len(parent):
            raise JsonPatchError(f"list index out of range: {key}")
        parent.insert(index, copy.deepcopy(value))
    else:
        raise JsonPatchError("cannot add into a scalar")
    return doc


def _remove(doc: Any, parts: list[str]) -> tuple[Any, Any]:
    if not parts:
        raise JsonPatchError("cannot remove the root")
    parent = _walk(doc, parts[:-1])
    key = parts[-1]
    try:
        if isinstance(parent, dict):
            return doc, parent.pop(key)
        elif isinstance(parent, list):
            return doc, parent.pop(int(key))
    except (KeyError, ValueError, IndexError):
        pass
    raise JsonPatchError(f"path not found: /{'/'.join(parts)}")


def json_patch(doc: Any, ops: Any) -> Any:
    """Apply a JSON-patch (RFC 6902) list of operations to a copy of ``doc``."""
    if not isinstance(ops, list):
        raise JsonPatchError("a JSON-patch must be a list of operations")
    result = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, Mapping) or "op" not in op or "path" not in op:
            raise JsonPatchError(f"malformed operation: {op!r}")
        parts = _pointer(op["path"])
        match op["op"]:
            case "add":
                result = _add(result, parts, op.get("value"))
            case "remove":
                result, _ = _remove(result, parts)
            case "replace":
                result, _ = _remove(result, parts)
                result = _add(result, parts, op.get("value"))
            case "move":
                result, value = _remove(result, _pointer(op["from"]))
                result = _add(result, parts, value)
            case "copy":
                result = _add(result, parts, _walk(result, _pointer(op["from"])))
            case "test":
                try:
                    actual = _walk(result, parts)
                except JsonPatchError:
                    actual = None
                if actual != op.get("value"):
                    raise JsonPatchError(
                        f"testing value {op['path']} failed: {actual!r} != {op.get('value')!r}"
                    )
            case other:
                raise JsonPatchError(f"unsupported operation: {other!r}")
    return result


# --------------------------------------------------------------------------------------------------
# Misc
# --------------------------------------------------------------------------------------------------


def without(obj: Mapping[str, Any], *keys: str) -> JsonDict:
    """A shallow copy of ``obj`` without the given top-level keys."""
    return {key: value for key, value in obj.items() if key not in keys}
