"""``kubetune validate``: load manifests and check them against the typed API and the CRDs.

:func:`validate_document` uses the pydantic models (whose validators evaluate the same CEL rules
as the cluster) and reports errors with field paths worded like kube-apiserver's
(``FinetuneJob.kubetune.dev "x" is invalid: spec.lora.r: Required value``).
:func:`validate_against_crd` (from :mod:`kubetune.schema.crd_validation`) checks the generated CRD
schema only, as the API server does. :func:`validate_manifest` runs both.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from pydantic import ValidationError

from kubetune.api.common import API_VERSION, GROUP
from kubetune.api.kinds import KIND_INFO
from kubetune.api.kube import object_meta_errors
from kubetune.api.kube import shown_value as _shown
from kubetune.schema.crd_validation import validate_against_crd

__all__ = [
    "FieldError",
    "LoadedDocument",
    "ManifestError",
    "format_errors",
    "is_kubetune",
    "load_manifests",
    "validate_against_crd",
    "validate_document",
    "validate_manifest",
]

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``2e-4`` as a number, as kubectl's YAML 1.2 parser does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml_documents(text: str) -> list[Any]:
    """The non-empty documents of a (multi-document) YAML text.

    Strict, as kube-apiserver's field validation is: a mapping with a duplicated key raises
    :class:`DuplicateKeys` (with every field path and line) instead of keeping the last value.
    """
    docs: list[Any] = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            data = loader.construct_document(node)
            duplicates = _duplicates(node)
            if duplicates and isinstance(data, dict):
                data = StrictDocument(data, duplicates)
            elif duplicates:
                raise DuplicateKeys(duplicates)
            if data is not None:
                docs.append(data)
    finally:
        loader.dispose()
    return docs


class StrictDocument(dict[str, Any]):
    """A mapping read from YAML whose text repeats keys: ``duplicates`` are the field errors
    (``path: Duplicate value: ...``) that :func:`validate_manifest` reports first."""

    def __init__(self, data: dict[str, Any], duplicates: list[str]) -> None:
        super().__init__(data)
        self.duplicates = duplicates


class DuplicateKeys(ValueError):
    """A YAML mapping repeats a key; each entry reads ``path: Duplicate value: ...``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _duplicates(node: yaml.Node | None, path: str = "") -> list[str]:
    out: list[str] = []
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            child = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen and key != "<<":
                out.append(
                    f'{child}: Duplicate value: "{key}": duplicate key (line {line}; first at '
                    f"line {seen[key]}); kube-apiserver rejects duplicate fields"
                )
            else:
                seen[key] = line
            out.extend(_duplicates(value_node, child))
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            out.extend(_duplicates(item, f"{path}[{i}]"))
    return out


class ManifestError(Exception):
    """A file that cannot be read as Kubernetes manifests."""


class LoadedDocument(NamedTuple):
    """One document of a manifest file: where it came from (``file.yaml#2``) and its body."""

    source: str
    doc: dict[str, Any]


@dataclass(frozen=True)
class FieldError:
    """One invalid field: ``path`` like ``spec.hyperparameters.learningRate``."""

    path: str
    reason: str
    message: str = ""

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" + (f": {self.message}" if self.message else "")

    @classmethod
    def parse(cls, text: str) -> FieldError:
        """Read back a ``path: Reason: detail`` line (as :func:`validate_against_crd` writes)."""
        path, _, rest = text.partition(": ")
        reason, _, message = rest.partition(": ")
        return cls(path, reason, message)


def is_kubetune(doc: dict[str, Any]) -> bool:
    """Whether a document belongs to the kubetune API group (any version)."""
    return str(doc.get("apiVersion", "")).split("/")[0] == GROUP


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES
        )
    if path.is_file():
        return [path]
    raise ManifestError(f"{path}: no such file or directory")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a repeated key (kube-apiserver's strict decoding does)."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise DuplicateKeys([f'{key}: Duplicate value: "{key}": duplicate key in an object'])
        seen[key] = value
    return seen


def _documents(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            loaded = json.loads(text)
            try:  # JSON is YAML: this names the field path and lines of a duplicated key
                as_yaml = load_yaml_documents(text)
            except yaml.YAMLError:
                loaded = json.loads(text, object_pairs_hook=_unique_keys)
            else:
                if len(as_yaml) == 1 and as_yaml[0] == loaded:
                    loaded = as_yaml[0]
            return loaded if isinstance(loaded, list) else [loaded]
        return load_yaml_documents(text)
    except json.JSONDecodeError as e:
        raise ManifestError(f"{path}: not valid JSON: {e.msg} (line {e.lineno})") from e
    except DuplicateKeys as e:
        raise ManifestError(f"{path}: strict decoding error: {e}") from e
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ManifestError(f"{path}: not valid YAML: {problem}{where}") from e


def load_manifests(
    paths: Iterable[str | Path],
    notes: list[str] | None = None,
    errors: list[str] | None = None,
) -> list[LoadedDocument]:
    """The kubetune documents in files and directories (recursively; .yaml, .yml, .json).

    Multi-document YAML and ``kind: List`` are expanded. Documents of other API groups are
    skipped; a note saying so is appended to ``notes`` when given. A file that cannot be read
    raises :class:`ManifestError`, or, when ``errors`` is given, is reported there and the other
    files are still read.
    """
    loaded: list[LoadedDocument] = []
    for root in paths:
        try:
            files = _files(Path(root))
        except ManifestError as exc:
            if errors is None:
                raise
            errors.append(str(exc))
            continue
        for file in files:
            try:
                loaded.extend(_file_manifests(file, notes))
            except ManifestError as exc:
                if errors is None:
                    raise
                errors.extend(str(exc).splitlines())
                if isinstance(exc, PartialManifests):
                    loaded.extend(exc.loaded)
    return loaded


def _file_manifests(file: Path, notes: list[str] | None) -> list[LoadedDocument]:
    """The kubetune documents of one file; every document that is not a mapping is reported
    (all of them, in one :class:`ManifestError`, after the valid ones were seen)."""
    loaded: list[LoadedDocument] = []
    problems: list[str] = []
    try:
        docs = _documents(file)
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{file}: cannot read: {exc}") from exc
    for index, doc in enumerate(docs, start=1):
        source = f"{file}#{index}" if len(docs) > 1 else str(file)
        items = doc.get("items", []) if isinstance(doc, dict) and _is_list(doc) else [doc]
        for item in items:
            if not isinstance(item, dict):
                problems.append(
                    f"{source}: a manifest must be a mapping (an object with apiVersion, kind, "
                    f"metadata and spec), not {_json_type_name(item)}"
                )
            elif is_kubetune(item):
                loaded.append(LoadedDocument(source, item))
            elif notes is not None:
                what = f"{item.get('apiVersion', '?')} {item.get('kind', '?')}"
                notes.append(f"{source}: skipped {what} (not a kubetune resource)")
    if problems:
        raise PartialManifests("\n".join(problems), loaded)
    return loaded


class PartialManifests(ManifestError):
    """Some documents of a file are not manifests; ``loaded`` holds the ones that are."""

    def __init__(self, message: str, loaded: list[LoadedDocument]) -> None:
        super().__init__(message)
        self.loaded = loaded


def _json_type_name(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"a string ({value[:40]!r})"
    return f"{type(value).__name__} ({value!r})"[:60]


def _is_list(doc: dict[str, Any]) -> bool:
    return str(doc.get("kind", "")).endswith("List") and isinstance(doc.get("items"), list)


# --- pydantic errors as field errors ---------------------------------------------------------


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _field_errors(error: ValidationError, prefix: str) -> list[FieldError]:
    out = []
    for item in error.errors(include_url=False):
        loc = [prefix, *item["loc"]]
        kind = item["type"]
        value = item.get("input")
        ctx = item.get("ctx") or {}
        if kind == "missing":
            out.append(FieldError(_path(loc), "Required value"))
        elif kind == "extra_forbidden":
            out.append(FieldError(_path(loc), "Unknown field", "field not declared in schema"))
        elif kind == "literal_error":
            expected = re.sub(r"'([^']*)'", r'"\1"', str(ctx.get("expected", "")))
            out.append(
                FieldError(
                    _path(loc),
                    "Unsupported value",
                    f"{_shown(value)}: supported values: {expected.replace(' or ', ', ')}",
                )
            )
        elif kind == "label_map":
            key = ctx.get("key")
            path = _path(loc) + (f"[{key}]" if key else "")
            out.append(
                FieldError(path, "Invalid value", f"{_shown(ctx.get('shown'))}: {ctx['message']}")
            )
        elif kind == "cel_rule":
            where = str(ctx.get("where", "")).removesuffix(": ")
            path = _path(loc) + (f".{where}" if where else "")
            out.append(FieldError(path, "Invalid value", f'"object": {ctx.get("message", "")}'))
        else:
            message = str(item["msg"]).removeprefix("Value error, ")
            message = message[:1].lower() + message[1:]
            out.append(FieldError(_path(loc), "Invalid value", f"{_shown(value)}: {message}"))
    return out


def _metadata_errors(meta: Any) -> list[FieldError]:
    return [FieldError(path, reason, detail) for path, reason, detail in object_meta_errors(meta)]


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _int64_errors(value: Any, path: str) -> list[FieldError]:
    """Integers outside int64: the API server cannot store them (they decode as numbers)."""
    if isinstance(value, bool):
        return []
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return []
        return [
            FieldError(
                path,
                "Invalid value",
                f"{value}: out of range: must be a 64-bit integer "
                f"(between {INT64_MIN} and {INT64_MAX})",
            )
        ]
    if isinstance(value, dict):
        return [e for k, v in value.items() for e in _int64_errors(v, f"{path}.{k}".lstrip("."))]
    if isinstance(value, list):
        return [e for i, v in enumerate(value) for e in _int64_errors(v, f"{path}[{i}]")]
    return []


def validate_document(doc: dict[str, Any]) -> list[FieldError]:
    """Field errors of one kubetune manifest, checked with the typed API; empty when valid."""
    if doc.get("apiVersion") != API_VERSION:
        return [
            FieldError(
                "apiVersion",
                "Unsupported value",
                f'{_shown(doc.get("apiVersion"))}: supported values: "{API_VERSION}"',
            )
        ]
    info = KIND_INFO.get(str(doc.get("kind")))
    if info is None:
        supported = ", ".join(f'"{k}"' for k in KIND_INFO)
        return [
            FieldError(
                "kind",
                "Unsupported value",
                f"{_shown(doc.get('kind'))}: supported values: {supported}",
            )
        ]
    errors = [FieldError.parse(d) for d in getattr(doc, "duplicates", ())]
    errors += _metadata_errors(doc.get("metadata"))
    overflow = _int64_errors({k: doc[k] for k in ("spec", "status") if k in doc}, "")
    if overflow:
        return errors + overflow
    for key in doc:
        if key not in ("apiVersion", "kind", "metadata", "spec", "status"):
            errors.append(FieldError(key, "Unknown field", "field not declared in schema"))
    parts = (("spec", info.spec_model), ("status", info.status_model))
    for key, model in parts:
        if key not in doc and key == "status":
            continue
        if key not in doc:
            errors.append(FieldError(key, "Required value"))
            continue
        try:
            model.model_validate(doc[key], by_alias=True, by_name=False)
        except ValidationError as e:
            errors.extend(_field_errors(e, key))
    return errors


def validate_manifest(doc: dict[str, Any]) -> list[FieldError]:
    """Typed-API errors, or when there are none, what the CRD schema and CEL rules reject."""
    errors = validate_document(doc)
    if errors:
        return errors
    return [FieldError.parse(text) for text in validate_against_crd(doc)]


def format_errors(doc: dict[str, Any], errors: Sequence[FieldError]) -> str:
    """All errors of one object in one line, as kube-apiserver words a 422 Invalid."""
    kind = str(doc.get("kind", "?"))
    meta = doc.get("metadata")
    name = meta.get("name", "") if isinstance(meta, dict) else ""
    joined = str(errors[0]) if len(errors) == 1 else "[" + ", ".join(map(str, errors)) + "]"
    return f'{kind}.{GROUP} "{name}" is invalid: {joined}'


def with_generated_name(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with a name when it only has ``metadata.generateName``: the prefix and
    five characters derived from its content (as the API server appends five random ones; here
    the same manifest gets the same name, so ``plan`` output is stable)."""
    meta = doc.get("metadata")
    if not isinstance(meta, dict) or meta.get("name") or not meta.get("generateName"):
        return doc
    import hashlib

    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()
    suffix = "".join("bcdfghjklmnpqrstvwxz2456789"[int(c, 16)] for c in digest[:5])
    return {**doc, "metadata": {**meta, "name": f"{meta['generateName']}{suffix}"[:253]}}


class InvalidManifests(Exception):
    """Some manifests are invalid; every error is listed (nothing should run)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def load_and_validate(paths: Iterable[Path]) -> list[tuple[str, dict[str, Any]]]:
    """Load and validate every manifest; raise InvalidManifests listing all errors."""
    errors: list[str] = []
    docs = [(d.source, d.doc) for d in load_manifests(list(paths), errors=errors)]
    for source, doc in docs:
        problems = validate_manifest(doc)
        if problems:
            errors.append(f"{source}: {format_errors(doc, problems)}")
    if not docs and not errors:
        errors.append("no kubetune resources found in the given files")
    docs = [(source, with_generated_name(doc)) for source, doc in docs]
    names: dict[tuple[str, str], str] = {}
    for source, doc in docs:
        key = (str(doc.get("kind")), str(doc.get("metadata", {}).get("name")))
        if key in names:
            errors.append(f"{source}: {key[0]} {key[1]!r} is also defined in {names[key]}")
        names[key] = source
    if errors:
        raise InvalidManifests(errors)
    return docs
