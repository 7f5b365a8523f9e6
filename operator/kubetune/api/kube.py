"""Kubernetes' own syntax rules (apimachinery ``validation``) as regexes, checks and types.

The regexes are apimachinery's (``IsQualifiedName``, ``IsValidLabelValue``,
``IsDNS1123Subdomain``, ``IsDNS1123Label``); the messages are worded as kube-apiserver words
them. Patterns with length bounds go into the CRDs (so ``kubectl apply`` is protected too);
what a CRD pattern cannot say (the length of a label key's prefix, map keys) is checked by the
pydantic validators and ``kubetune validate``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

DNS1123_LABEL_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = rf"{DNS1123_LABEL_FMT}(\.{DNS1123_LABEL_FMT})*"
QUALIFIED_NAME_FMT = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = rf"({QUALIFIED_NAME_FMT})?"

DNS1123_LABEL_PATTERN = rf"^{DNS1123_LABEL_FMT}$"
DNS1123_SUBDOMAIN_PATTERN = rf"^{DNS1123_SUBDOMAIN_FMT}$"
LABEL_VALUE_PATTERN = rf"^{LABEL_VALUE_FMT}$"
# A qualified name ([prefix/]name); the lengths (prefix <= 253, name <= 63) are checked apart.
QUALIFIED_NAME_PATTERN = rf"^({DNS1123_SUBDOMAIN_FMT}/)?{QUALIFIED_NAME_FMT}$"

_QUALIFIED_NAME_ERROR = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and "
    "end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
    "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
)
_LABEL_VALUE_ERROR = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
    "'my_value',  or '12345', regex used for validation is "
    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
)
_SUBDOMAIN_ERROR = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or "
    "'.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used "
    "for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_ERROR = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
    "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
    "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)


def _bounded_match_errors(
    value: str, max_length: int, fmt: str, error: str, part: str = ""
) -> list[str]:
    """apimachinery's shape of a syntax check: a length bound, then a regex (``part``: which
    part of the value, as the length message names it)."""
    errors = []
    if len(value) > max_length:
        errors.append(f"{part}must be no more than {max_length} characters")
    if not re.fullmatch(fmt, value):
        errors.append(error)
    return errors


def dns1123_subdomain_errors(value: str) -> list[str]:
    """apimachinery ``IsDNS1123Subdomain``."""
    return _bounded_match_errors(value, 253, DNS1123_SUBDOMAIN_FMT, _SUBDOMAIN_ERROR)


def dns1123_label_errors(value: str) -> list[str]:
    """apimachinery ``IsDNS1123Label``."""
    return _bounded_match_errors(value, 63, DNS1123_LABEL_FMT, _LABEL_ERROR)


def qualified_name_errors(value: str) -> list[str]:
    """apimachinery ``IsQualifiedName``: label keys, annotation keys, topology keys."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        prefix_errors = dns1123_subdomain_errors(prefix)
        if prefix_errors:
            return [f"prefix part {e}" for e in prefix_errors]
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') "
            "with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        return ["name part must be non-empty"]
    return _bounded_match_errors(name, 63, QUALIFIED_NAME_FMT, _QUALIFIED_NAME_ERROR, "name part ")


def label_value_errors(value: str) -> list[str]:
    """apimachinery ``IsValidLabelValue``."""
    return _bounded_match_errors(value, 63, LABEL_VALUE_FMT, _LABEL_VALUE_ERROR)


def label_map_errors(labels: dict[str, str]) -> list[tuple[str, str, str]]:
    """(key, shown value, message) of every invalid key or value of a label map."""
    out = []
    for key, value in labels.items():
        for message in qualified_name_errors(str(key)):
            out.append((key, str(key), message))
        if not isinstance(value, str):
            out.append((key, str(value), "must be a string"))
            continue
        for message in label_value_errors(value):
            out.append((key, value, message))
    return out


def _check(errors_of: Callable[[str], list[str]]) -> AfterValidator:
    def check(value: str) -> str:
        errors = errors_of(value)
        if errors:
            raise ValueError("; ".join(errors))
        return value

    return AfterValidator(check)


def _check_label_map(value: dict[str, str] | None) -> dict[str, str] | None:
    if value is None:
        return None
    problems = label_map_errors(value)
    if problems:
        key, shown, message = problems[0]
        raise PydanticCustomError(
            "label_map",
            "{shown}: {message}",
            # kube-apiserver reports a bad key at the map, a bad value at the map's key.
            {"key": key if shown != key else "", "shown": shown, "message": message},
        )
    return value


def _schema(pattern: str, max_length: int) -> Any:
    """The pattern and bound for the CRD only: the check function gives kube's own message."""
    return Field(json_schema_extra={"pattern": pattern, "maxLength": max_length})


LabelValue = Annotated[str, _schema(LABEL_VALUE_PATTERN, 63), _check(label_value_errors)]
QualifiedName = Annotated[str, _schema(QUALIFIED_NAME_PATTERN, 317), _check(qualified_name_errors)]
DNSSubdomain = Annotated[
    str, _schema(DNS1123_SUBDOMAIN_PATTERN, 253), _check(dns1123_subdomain_errors)
]
DNSLabel = Annotated[str, _schema(DNS1123_LABEL_PATTERN, 63), _check(dns1123_label_errors)]
LabelMap = Annotated[
    dict[str, Annotated[str, _schema(LABEL_VALUE_PATTERN, 63)]],
    Field(max_length=256),
    AfterValidator(_check_label_map),
]


# --- ObjectMeta ---------------------------------------------------------------------------

OBJECT_META_FIELDS = frozenset(
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
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def _generate_name_errors(prefix: str) -> list[str]:
    """apimachinery ``NameIsDNSSubdomain(prefix, true)``: a trailing '-' is allowed."""
    masked = prefix[:-1] + "a" if len(prefix) > 1 and prefix.endswith("-") else prefix
    return dns1123_subdomain_errors(masked)


def _string_map(value: Any, path: str, out: list[tuple[str, str, str]]) -> dict[str, str] | None:
    if not isinstance(value, dict):
        out.append((path, "Invalid value", f"{shown_value(value)}: must be a map of strings"))
        return None
    for key, item in value.items():
        if not isinstance(item, str):
            out.append(
                (
                    f"{path}[{key}]",
                    "Invalid value",
                    f"{shown_value(item)}: must be a string (quote it)",
                )
            )
    return {str(k): v for k, v in value.items() if isinstance(v, str)}


def shown_value(value: Any) -> str:
    """A value as kube-apiserver quotes it in an error: JSON, or "object"/"array"."""
    import json

    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    try:
        return json.dumps(value)
    except TypeError:
        return json.dumps(str(value))


Problems = list[tuple[str, str, str]]


def object_meta_errors(meta: Any) -> Problems:
    """(path, reason, detail) of everything kube-apiserver refuses in a custom resource's
    metadata: unknown fields, name/generateName (DNS subdomains), namespace (DNS label), label
    keys and values, annotation keys and total size, finalizer names, owner references."""
    if not isinstance(meta, dict):
        return [("metadata", "Required value", "metadata with a name or generateName is required")]
    out: Problems = [
        (f"metadata.{key}", "Unknown field", "field not declared in schema")
        for key in meta
        if key not in OBJECT_META_FIELDS
    ]
    if meta.get("name") is None and not meta.get("generateName"):
        out.append(("metadata.name", "Required value", "name or generateName is required"))
    out += _string_field_errors(meta, "name", dns1123_subdomain_errors)
    out += _string_field_errors(meta, "generateName", _generate_name_errors)
    out += _string_field_errors(meta, "namespace", dns1123_label_errors)
    if meta.get("labels") is not None:
        labels = _string_map(meta["labels"], "metadata.labels", out)
        for _key, shown, message in label_map_errors(labels or {}):
            out.append(("metadata.labels", "Invalid value", f"{shown_value(shown)}: {message}"))
    if meta.get("annotations") is not None:
        out += _annotation_errors(meta["annotations"])
    if meta.get("finalizers") is not None:
        out += _list_errors(
            meta["finalizers"],
            "metadata.finalizers",
            "must be a list of strings",
            _finalizer_errors,
        )
    if meta.get("ownerReferences") is not None:
        out += _list_errors(
            meta["ownerReferences"],
            "metadata.ownerReferences",
            "must be a list",
            _owner_reference_errors,
        )
    for field in ("generation", "deletionGracePeriodSeconds"):
        value = meta.get(field)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            out.append(
                (f"metadata.{field}", "Invalid value", f"{shown_value(value)}: must be an integer")
            )
    return out


def _string_field_errors(
    meta: dict[str, Any], field: str, errors_of: Callable[[str], list[str]]
) -> Problems:
    """A string field of metadata checked by ``errors_of`` (absent: no problem)."""
    value = meta.get(field)
    if value is None:
        return []
    problems = errors_of(value) if isinstance(value, str) else ["must be a string"]
    return [(f"metadata.{field}", "Invalid value", f"{shown_value(value)}: {p}") for p in problems]


def _annotation_errors(value: Any) -> Problems:
    """Annotation keys (qualified names, case-insensitive) and their total size."""
    out: Problems = []
    annotations = _string_map(value, "metadata.annotations", out) or {}
    for key in annotations:
        for message in qualified_name_errors(key.lower()):
            out.append(("metadata.annotations", "Invalid value", f"{shown_value(key)}: {message}"))
    size = sum(len(k) + len(v) for k, v in annotations.items())
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        limit = f"must have at most {TOTAL_ANNOTATION_SIZE_LIMIT} bytes"
        out.append(("metadata.annotations", "Too long", limit))
    return out


def _list_errors(
    value: Any, path: str, must_be: str, item_errors: Callable[[str, Any], Problems]
) -> Problems:
    """A list field of metadata: ``must_be`` when it is not a list, else each item's
    problems (``item_errors(path[i], item)``)."""
    if not isinstance(value, list):
        return [(path, "Invalid value", f"{shown_value(value)}: {must_be}")]
    return [p for i, item in enumerate(value) for p in item_errors(f"{path}[{i}]", item)]


def _finalizer_errors(where: str, item: Any) -> Problems:
    """A finalizer: a qualified name."""
    problems = qualified_name_errors(item) if isinstance(item, str) else ["must be a string"]
    return [(where, "Invalid value", f"{shown_value(item)}: {p}") for p in problems]


def _owner_reference_errors(where: str, ref: Any) -> Problems:
    """An owner reference: an object with apiVersion, kind, name and uid."""
    if not isinstance(ref, dict):
        return [(where, "Invalid value", f"{shown_value(ref)}: must be an object")]
    fields = ("apiVersion", "kind", "name", "uid")
    return [(f"{where}.{field}", "Required value", "") for field in fields if not ref.get(field)]
