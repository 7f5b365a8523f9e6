"""
kube-apiserver's field errors and the validation helpers that every kind shares.

:class:`FieldError` renders like ``k8s.io/apimachinery/pkg/util/validation/field.Error``
(``spec.lora.r: Required value``, ``metadata.name: Invalid value: "A": ...``).
The helpers re-implement ``k8s.io/apimachinery/pkg/util/validation`` (DNS names,
qualified names, label values) and the ``ObjectMeta`` checks of
``k8s.io/apimachinery/pkg/api/validation`` with the server's wording, so that
the emulator refuses what a real cluster refuses. This module is an independent
oracle: it must not import the code under test (``kubetune``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# Error types, as ``field.ErrorType.String()`` renders them.
REQUIRED = "Required value"
INVALID = "Invalid value"
UNSUPPORTED = "Unsupported value"
FORBIDDEN = "Forbidden"
TOO_LONG = "Too long"
TOO_MANY = "Too many"
DUPLICATE = "Duplicate value"
NOT_FOUND = "Not found"
INTERNAL = "Internal error"

#: ``metav1.Status`` cause reasons per error type.
CAUSE_REASONS = {
    REQUIRED: "FieldValueRequired",
    INVALID: "FieldValueInvalid",
    UNSUPPORTED: "FieldValueNotSupported",
    FORBIDDEN: "FieldValueForbidden",
    TOO_LONG: "FieldValueTooLong",
    TOO_MANY: "FieldValueTooMany",
    DUPLICATE: "FieldValueDuplicate",
    NOT_FOUND: "FieldValueNotFound",
    INTERNAL: "InternalError",
}

_NO_VALUE: Any = object()


def go_value(value: Any) -> str:
    """A value as Go's ``field.Error`` prints it (``%q`` for strings, ``%v`` for numbers)."""
    if value is None:
        return '"null"'  # Go renders a nil bad value as the string "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return go_float(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        inner = ", ".join(f"{json.dumps(str(k))}:{go_value(v)}" for k, v in value.items())
        return f"map[string]interface {{}}{{{inner}}}"
    if isinstance(value, (list, tuple)):
        return "[]interface {}{" + ", ".join(go_value(v) for v in value) + "}"
    return json.dumps(str(value))


def go_float(value: float) -> str:
    """``strconv.FormatFloat(f, 'g', -1, 64)`` as ``%v`` prints a float64."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    text = repr(value)
    if "e" in text:
        mantissa, _, exponent = text.partition("e")
        sign = "-" if exponent.startswith("-") else "+"
        digits = exponent.lstrip("+-").rjust(2, "0")
        text = f"{mantissa}e{sign}{digits}"
    return text


@dataclass(frozen=True)
class FieldError:
    """One field error, rendered as kube-apiserver renders ``field.Error``."""

    path: str
    type: str
    value: Any = _NO_VALUE
    detail: str = ""
    type_invalid: bool = False  # field.TypeInvalid (rendered as "Invalid value", but blocking)

    def body(self) -> str:
        if self.type in (REQUIRED, FORBIDDEN, TOO_LONG, INTERNAL) or self.value is _NO_VALUE:
            text = self.type
        else:
            text = f"{self.type}: {go_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def __str__(self) -> str:
        return f"{self.path or '<nil>'}: {self.body()}"

    @property
    def cause(self) -> dict[str, str]:
        """The ``metav1.StatusCause`` of this error."""
        return {
            "reason": CAUSE_REASONS.get(self.type, "FieldValueInvalid"),
            "message": self.body(),
            "field": self.path or "<nil>",
        }

    @property
    def blocking(self) -> bool:
        """Whether kube-apiserver skips the CEL rules because of this error."""
        return self.type_invalid or self.type in (REQUIRED, UNSUPPORTED, TOO_LONG, TOO_MANY)


def required(path: str, detail: str = "") -> FieldError:
    return FieldError(path, REQUIRED, detail=detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError(path, INVALID, value, detail)


def unsupported(path: str, value: Any, supported: Iterable[Any]) -> FieldError:
    values = ", ".join(go_value(v) for v in supported)
    return FieldError(path, UNSUPPORTED, value, f"supported values: {values}" if values else "")


def forbidden(path: str, detail: str) -> FieldError:
    return FieldError(path, FORBIDDEN, detail=detail)


def too_long(path: str, max_length: int) -> FieldError:
    unit = "byte" if max_length == 1 else "bytes"
    return FieldError(path, TOO_LONG, detail=f"may not be more than {max_length} {unit}")


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError(path, DUPLICATE, value)


def not_found(path: str, value: Any) -> FieldError:
    return FieldError(path, NOT_FOUND, value)


def join_path(base: str, child: str | int) -> str:
    """``spec`` + ``lora`` -> ``spec.lora``; ``spec.steps`` + ``0`` -> ``spec.steps[0]``."""
    if isinstance(child, int):
        return f"{base}[{child}]"
    return f"{base}.{child}" if base else child


def key_path(base: str, key: str) -> str:
    """A map key in a field path, as ``field.Path.Key``: ``metadata.labels[app]``."""
    return f"{base}[{key}]"


# --------------------------------------------------------------------------------------------------
# k8s.io/apimachinery/pkg/util/validation
# --------------------------------------------------------------------------------------------------


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{example}', " for example in examples)
    return f"{msg} (e.g. {shown}regex used for validation is '{fmt}')"


def max_len_error(length: int) -> str:
    return f"must be no more than {length} characters"


DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
DNS1035_LABEL_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = f"({QNAME_FMT})?"
C_IDENTIFIER_FMT = "[A-Za-z_][A-Za-z0-9_]*"
ENV_VAR_NAME_FMT = "[-._a-zA-Z][-._a-zA-Z0-9]*"
CONFIG_MAP_KEY_FMT = "[-._a-zA-Z0-9]+"


def is_dns1123_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append(max_len_error(63))
    if not re.fullmatch(DNS1123_LABEL_FMT, value):
        msg = (
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters"
            " or '-', and must start and end with an alphanumeric character"
        )
        errors.append(regex_error(msg, DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return errors


def is_dns1123_subdomain(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append(max_len_error(253))
    if not re.fullmatch(DNS1123_SUBDOMAIN_FMT, value):
        msg = (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters,"
            " '-' or '.', and must start and end with an alphanumeric character"
        )
        errors.append(regex_error(msg, DNS1123_SUBDOMAIN_FMT, "example.com"))
    return errors


def is_dns1035_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append(max_len_error(63))
    if not re.fullmatch(DNS1035_LABEL_FMT, value):
        msg = (
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-',"
            " start with an alphabetic character, and end with an alphanumeric character"
        )
        errors.append(regex_error(msg, DNS1035_LABEL_FMT, "my-name", "abc-123"))
    return errors


_QNAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end"
    " with an alphanumeric character"
)


def is_qualified_name(value: str) -> list[str]:
    errors: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errors.append("prefix part must be non-empty")
        else:
            errors.extend(f"prefix part {msg}" for msg in is_dns1123_subdomain(prefix))
    else:
        return [
            "a qualified name "
            + regex_error(_QNAME_MSG, QNAME_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        errors.append("name part must be non-empty")
    elif len(name) > 63:
        errors.append("name part " + max_len_error(63))
    if not re.fullmatch(QNAME_FMT, name):
        errors.append(
            "name part " + regex_error(_QNAME_MSG, QNAME_FMT, "MyName", "my.name", "123-abc")
        )
    return errors


def is_valid_label_value(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append(max_len_error(63))
    if not re.fullmatch(LABEL_VALUE_FMT, value):
        msg = (
            "a valid label must be an empty string or consist of alphanumeric characters,"
            " '-', '_' or '.', and must start and end with an alphanumeric character"
        )
        errors.append(regex_error(msg, LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return errors


def is_env_var_name(value: str) -> list[str]:
    errors = []
    if not re.fullmatch(ENV_VAR_NAME_FMT, value):
        msg = (
            "a valid environment variable name must consist of alphabetic characters,"
            " digits, '_', '-', or '.', and must not start with a digit"
        )
        errors.append(
            regex_error(msg, ENV_VAR_NAME_FMT, "my.env-name", "MY_ENV.NAME", "MyEnvName1")
        )
    if value in (".", ".."):
        errors.append(f"must not be '{value}'")
    elif value.startswith(".."):
        errors.append("must not start with '..'")
    return errors


def is_config_map_key(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append(max_len_error(253))
    if not re.fullmatch(CONFIG_MAP_KEY_FMT, value):
        msg = "a valid config key must consist of alphanumeric characters, '-', '_' or '.'"
        errors.append(regex_error(msg, CONFIG_MAP_KEY_FMT, "key.name", "KEY_NAME", "key-name"))
    if value in (".", ".."):
        errors.append(f"must not be '{value}'")
    elif value.startswith(".."):
        errors.append("must not start with '..'")
    return errors


def is_port_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


NameCheck = Callable[[str], list[str]]


def check_name(check: NameCheck, path: str, value: str) -> list[FieldError]:
    """``[invalid(path, value, msg) for msg in check(value)]``."""
    return [invalid(path, value, msg) for msg in check(value)]


# --------------------------------------------------------------------------------------------------
# ObjectMeta (k8s.io/apimachinery/pkg/api/validation/objectmeta.go)
# --------------------------------------------------------------------------------------------------

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
FINALIZER_FMT = QNAME_FMT


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(labels, Mapping):
        return errors
    for key, value in labels.items():
        errors.extend(invalid(path, key, msg) for msg in is_qualified_name(str(key)))
        if isinstance(value, str):
            errors.extend(invalid(path, value, msg) for msg in is_valid_label_value(value))
    return errors


def validate_annotations(annotations: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(annotations, Mapping):
        return errors
    size = 0
    for key, value in annotations.items():
        errors.extend(invalid(path, key, msg) for msg in is_qualified_name(str(key).lower()))
        size += len(str(key)) + len(str(value or ""))
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        errors.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errors


def validate_finalizers(finalizers: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(finalizers, list):
        return errors
    seen: set[str] = set()
    for finalizer in finalizers:
        if not isinstance(finalizer, str):
            continue
        errors.extend(invalid(path, finalizer, msg) for msg in is_qualified_name(finalizer))
        if finalizer in seen:
            errors.append(duplicate(path, finalizer))
        seen.add(finalizer)
    return errors


def validate_owner_references(refs: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(refs, list):
        return errors
    controllers = 0
    for index, ref in enumerate(refs):
        if not isinstance(ref, Mapping):
            continue
        here = join_path(path, index)
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                detail = {
                    "apiVersion": "version must not be empty",
                    "kind": "kind must not be empty",
                    "name": "name must not be empty",
                    "uid": "uid must not be empty",
                }[key]
                errors.append(invalid(join_path(here, key), ref.get(key, ""), detail))
        if ref.get("controller"):
            controllers += 1
    if controllers > 1:
        errors.append(
            invalid(
                path,
                refs,
                "Only one reference can have Controller set to true."
                f' Found "true" in references for {controllers} owners',
            )
        )
    return errors


def validate_object_meta(
    meta: Mapping[str, Any],
    *,
    namespaced: bool,
    name_check: NameCheck = is_dns1123_subdomain,
    path: str = "metadata",
) -> list[FieldError]:
    """``ValidateObjectMeta``: name (or generateName), namespace, labels, annotations, ..."""
    errors: list[FieldError] = []
    name = meta.get("name")
    if not name and not meta.get("generateName"):
        errors.append(required(join_path(path, "name"), "name or generateName is required"))
    if isinstance(name, str) and name:
        for msg in _path_segment_errors(name):
            errors.append(invalid(join_path(path, "name"), name, msg))
        errors.extend(invalid(join_path(path, "name"), name, msg) for msg in name_check(name))
    generate = meta.get("generateName")
    if isinstance(generate, str) and generate and not name:
        # the prefix is checked with the trailing '-' (or anything) stripped, as MaskTrailingDash
        masked = generate[:-1] + "a" if len(generate) > 1 and generate.endswith("-") else generate
        errors.extend(
            invalid(join_path(path, "generateName"), generate, msg) for msg in name_check(masked)
        )
    namespace = meta.get("namespace")
    if namespaced:
        if not namespace:
            errors.append(required(join_path(path, "namespace"), ""))
        else:
            errors.extend(
                invalid(join_path(path, "namespace"), namespace, msg)
                for msg in is_dns1123_label(str(namespace))
            )
    elif namespace:
        errors.append(forbidden(join_path(path, "namespace"), "not allowed on this type"))
    generation = meta.get("generation")
    if isinstance(generation, int) and generation < 0:
        errors.append(
            invalid(join_path(path, "generation"), generation, "must be greater than or equal to 0")
        )
    errors.extend(validate_labels(meta.get("labels"), join_path(path, "labels")))
    errors.extend(validate_annotations(meta.get("annotations"), join_path(path, "annotations")))
    errors.extend(
        validate_owner_references(meta.get("ownerReferences"), join_path(path, "ownerReferences"))
    )
    errors.extend(validate_finalizers(meta.get("finalizers"), join_path(path, "finalizers")))
    return errors


def _path_segment_errors(name: str) -> list[str]:
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{bad}'" for bad in ("/", "%") if bad in name]


def validate_object_meta_update(
    new: Mapping[str, Any], old: Mapping[str, Any], path: str = "metadata"
) -> list[FieldError]:
    """``ValidateObjectMetaUpdate``: immutable name/namespace/uid/creationTimestamp."""
    errors: list[FieldError] = []
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        if key in old and new.get(key, old.get(key)) != old.get(key):
            errors.append(invalid(join_path(path, key), new.get(key), "field is immutable"))
    return errors


def format_errors(errors: Sequence[FieldError | str]) -> list[str]:
    """The errors as strings (``path: body``), without duplicates, in order."""
    return list(dict.fromkeys(str(error) for error in errors))
