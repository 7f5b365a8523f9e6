"""
The JSONPath subset of kubectl/kube-apiserver (``k8s.io/client-go/util/jsonpath``) that
printer columns use: ``.a.b``, ``['a.b']``, ``[0]``, ``[-1]``, ``[*]``, ``..name``
(recursive descent) and filters ``[?(@.type=="Ready")]`` (``==``, ``!=``, ``<``, ``>``,
``<=``, ``>=``, or a bare ``@.field`` for presence). Enclosing ``{...}`` is optional.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(
    r"""
    \.\.(?P<deep>[A-Za-z0-9_\-$]+)              # ..name
    | \.(?P<field>[A-Za-z0-9_\-$]+)            # .name
    | \[\s*'(?P<quoted>[^']*)'\s*\]            # ['name']
    | \[\s*"(?P<dquoted>[^"]*)"\s*\]           # ["name"]
    | \[\s*(?P<index>-?\d+)\s*\]               # [0]
    | \[\s*(?P<slice>-?\d*\s*:\s*-?\d*)\s*\]   # [1:3]
    | \[\s*\*\s*\]                             # [*]
    | \.\*                                     # .*
    | \[\s*\?\((?P<filter>[^\]]*)\)\s*\]       # [?(@.type=="Ready")]
    """,
    re.VERBOSE,
)
_FILTER = re.compile(r"^@((?:\.[A-Za-z0-9_\-$]+)+)\s*(?:(==|!=|<=|>=|<|>)\s*(.+))?$")


class JsonPathError(ValueError):
    pass


def _literal(text: str) -> Any:
    text = text.strip()
    if text[:1] in "'\"" and text[-1:] == text[:1]:
        return text[1:-1]
    try:
        return json.loads(text)
    except ValueError:
        return text


def _children(value: Any) -> list[Any]:
    if isinstance(value, Mapping):
        return list(value.values())
    if isinstance(value, list):
        return list(value)
    return []


def _descend(value: Any, name: str) -> list[Any]:
    found: list[Any] = []
    if isinstance(value, Mapping):
        if name in value:
            found.append(value[name])
        for child in value.values():
            found.extend(_descend(child, name))
    elif isinstance(value, list):
        for child in value:
            found.extend(_descend(child, name))
    return found


def _matches(item: Any, expression: str) -> bool:
    m = _FILTER.match(expression.strip())
    if not m:
        raise JsonPathError(f"unsupported filter: {expression!r}")
    values = find(item, m[1])
    if not m[2]:
        return bool(values)
    if not values:
        return False
    left, right = values[0], _literal(m[3])
    try:
        match m[2]:
            case "==":
                return bool(left == right or str(left) == str(right))
            case "!=":
                return bool(left != right and str(left) != str(right))
            case "<":
                return bool(left < right)
            case ">":
                return bool(left > right)
            case "<=":
                return bool(left <= right)
            case ">=":
                return bool(left >= right)
    except TypeError:
        return False
    return False  # pragma: no cover


def find(obj: Any, path: str) -> list[Any]:
    """All values of ``path`` in ``obj`` (an empty list when nothing matches)."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    current = [obj]
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise JsonPathError(f"unsupported JSONPath at {text[pos:]!r} (in {path!r})")
        pos = m.end()
        nxt: list[Any] = []
        for value in current:
            if m["deep"] is not None:
                nxt.extend(_descend(value, m["deep"]))
            elif m["field"] is not None or m["quoted"] is not None or m["dquoted"] is not None:
                key = m["field"] if m["field"] is not None else m["quoted"] or m["dquoted"] or ""
                if isinstance(value, Mapping) and key in value:
                    nxt.append(value[key])
            elif m["index"] is not None:
                if isinstance(value, list):
                    index = int(m["index"])
                    if -len(value) <= index < len(value):
                        nxt.append(value[index])
            elif m["slice"] is not None:
                if isinstance(value, list):
                    start, _, stop = m["slice"].partition(":")
                    nxt.extend(
                        value[
                            int(start) if start.strip() else None : int(stop)
                            if stop.strip()
                            else None
                        ]
                    )
            elif m["filter"] is not None:
                items = value if isinstance(value, list) else _children(value)
                nxt.extend(item for item in items if _matches(item, m["filter"]))
            else:  # [*] or .*
                nxt.extend(_children(value))
        current = nxt
    return current


def first(obj: Any, path: str) -> Any:
    """The first value of ``path`` in ``obj`` (``None`` when nothing matches)."""
    values = find(obj, path)
    return values[0] if values else None
