"""
The OpenAPI documents of the emulator: ``/openapi/v3`` (and one document per group-version,
``/openapi/v3/apis/<group>/<version>``), and a JSON ``/openapi/v2``.

kubectl (1.27+) reads ``/openapi/v3`` to learn that the server validates fields itself
(the ``fieldValidation`` query parameter of the PATCH operations); it then sends
``fieldValidation=Strict`` instead of validating on the client, and reads the schemas of
built-in kinds to compute strategic merge patches (``kubectl apply``) and for
``kubectl explain``. The schemas of built-in kinds are Kubernetes' own (from the
``kubernetes-validate`` package, see :mod:`tests.emulator.builtins`), those of custom
resources are the CRDs' ``openAPIV3Schema``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from tests.emulator import builtins

JsonDict = dict[str, Any]

_META = "io.k8s.apimachinery.pkg.apis.meta.v1"
_ALWAYS = (
    f"{_META}.ObjectMeta",
    f"{_META}.ListMeta",
    f"{_META}.Status",
    f"{_META}.DeleteOptions",
    f"{_META}.Patch",
    f"{_META}.WatchEvent",
)


def _v3_schema(schema: Any) -> Any:
    """A kubernetes-validate (JSON schema) definition as an OpenAPI 3.0 schema."""
    if isinstance(schema, list):
        return [_v3_schema(item) for item in schema]
    if not isinstance(schema, Mapping):
        return schema
    out: JsonDict = {}
    for key, value in schema.items():
        if key == "$ref":
            out[key] = "#/components/schemas/" + str(value).rsplit("/", 1)[-1]
        elif key == "type" and isinstance(value, list):
            types = [t for t in value if t != "null"]
            if types:
                out[key] = types[0]
        elif key == "enum" and schema.get("type") and "null" in (schema.get("type") or []):
            continue  # apiVersion/kind enums are not part of kube-apiserver's documents
        elif key == "properties" and isinstance(value, Mapping):
            out[key] = {name: _v3_schema(prop) for name, prop in value.items()}
        else:
            out[key] = _v3_schema(value)
    return out


def _refs(schema: Any, found: set[str]) -> None:
    if isinstance(schema, Mapping):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name not in found:
                found.add(name)
                _refs(builtins.definitions().get(name, {}), found)
        for key, value in schema.items():
            if key != "$ref":
                _refs(value, found)
    elif isinstance(schema, list):
        for item in schema:
            _refs(item, found)


def crd_definition_name(group: str, version: str, kind: str) -> str:
    """``kubetune.dev``/``v1alpha1``/``FinetuneJob`` -> ``dev.kubetune.v1alpha1.FinetuneJob``."""
    return ".".join([*reversed(group.split(".")), version, kind])


def _parameters(verb: str) -> list[JsonDict]:
    def query(name: str, type_: str = "string") -> JsonDict:
        return {"name": name, "in": "query", "schema": {"type": type_, "uniqueItems": True}}

    params = [query("pretty")]
    if verb in ("post", "put", "patch"):
        params += [query("dryRun"), query("fieldManager"), query("fieldValidation")]
    if verb == "patch":
        params.append(query("force", "boolean"))
    if verb == "delete":
        params += [
            query("dryRun"),
            query("gracePeriodSeconds", "integer"),
            query("propagationPolicy"),
        ]
    if verb == "get-list":
        params = [query(name) for name in ("continue", "fieldSelector", "labelSelector")] + [
            query("limit", "integer"),
            query("resourceVersion"),
            query("timeoutSeconds", "integer"),
            query("watch", "boolean"),
        ]
    return params


def _operation(
    action: str, gvk: JsonDict, ref: str, verb: str, op_id: str, *, strategic: bool = True
) -> JsonDict:
    op: JsonDict = {
        "operationId": op_id,
        "parameters": _parameters(verb),
        "responses": {
            "200": {
                "description": "OK",
                "content": {"application/json": {"schema": {"$ref": ref}}},
            },
            "401": {"description": "Unauthorized"},
        },
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk,
    }
    if verb in ("post", "put"):
        op["requestBody"] = {
            "content": {"*/*": {"schema": {"$ref": ref}}},
            "required": True,
        }
    if verb == "patch":
        patch_ref = {"schema": {"$ref": f"#/components/schemas/{_META}.Patch"}}
        media_types = [
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
        ]
        if strategic:  # not for custom resources: kubectl then sends a merge patch
            media_types.append("application/strategic-merge-patch+json")
        op["requestBody"] = {
            "content": {media: patch_ref for media in media_types},
            "required": True,
        }
    return op


def group_version_document(
    group: str,
    version: str,
    resources: Iterable[Any],
    crd_schemas: Mapping[str, Mapping[str, Any]],
) -> JsonDict:
    """The OpenAPI v3 document of one group-version.

    ``resources`` are :class:`~tests.emulator.resources.ResourceSpec` s of that
    group-version; ``crd_schemas`` maps kinds of custom resources to their schemas.
    """
    schemas: JsonDict = {}
    wanted: set[str] = set(_ALWAYS)
    paths: JsonDict = {}
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    for spec in resources:
        gvk = {"group": group, "version": version, "kind": spec.kind}
        custom = spec.kind in crd_schemas
        if custom:
            name = crd_definition_name(group, version, spec.kind)
            schema = copy.deepcopy(dict(crd_schemas[spec.kind]))
            props = schema.setdefault("properties", {})
            props["metadata"] = {"$ref": f"#/components/schemas/{_META}.ObjectMeta"}
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            schema["x-kubernetes-group-version-kind"] = [gvk]
            schemas[name] = schema
            list_name = f"{name}List"
            schemas[list_name] = {
                "type": "object",
                "required": ["items"],
                "properties": {
                    "apiVersion": {"type": "string"},
                    "kind": {"type": "string"},
                    "items": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
                    "metadata": {"$ref": f"#/components/schemas/{_META}.ListMeta"},
                },
                "x-kubernetes-group-version-kind": [gvk | {"kind": f"{spec.kind}List"}],
            }
        else:
            found = builtins.definition_name(group, version, spec.kind)
            if found is None:
                continue
            name = found
            wanted.add(name)
            list_found = builtins.definition_name(group, version, f"{spec.kind}List")
            if list_found:
                wanted.add(list_found)
        ref = f"#/components/schemas/{name}"
        op = f"{spec.kind}{group.split('.')[0].title()}{version.title()}"
        base = (
            f"{prefix}/namespaces/{{namespace}}/{spec.plural}"
            if spec.namespaced
            else f"{prefix}/{spec.plural}"
        )
        path_params = (
            [{"name": "namespace", "in": "path", "required": True, "schema": {"type": "string"}}]
            if spec.namespaced
            else []
        )
        name_param = [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
        paths[base] = {
            "get": _operation("list", gvk, ref + "List", "get-list", f"list{op}"),
            "post": _operation("post", gvk, ref, "post", f"create{op}"),
            "delete": _operation(
                "deletecollection",
                gvk,
                f"#/components/schemas/{_META}.Status",
                "delete",
                f"deletecollection{op}",
            ),
            "parameters": path_params,
        }
        paths[f"{base}/{{name}}"] = {
            "get": _operation("get", gvk, ref, "get", f"read{op}"),
            "put": _operation("put", gvk, ref, "put", f"replace{op}"),
            "patch": _operation("patch", gvk, ref, "patch", f"patch{op}", strategic=not custom),
            "delete": _operation(
                "delete", gvk, f"#/components/schemas/{_META}.Status", "delete", f"delete{op}"
            ),
            "parameters": path_params + name_param,
        }
        if spec.status_subresource:
            paths[f"{base}/{{name}}/status"] = {
                "get": _operation("get", gvk, ref, "get", f"read{op}Status"),
                "put": _operation("put", gvk, ref, "put", f"replace{op}Status"),
                "patch": _operation(
                    "patch", gvk, ref, "patch", f"patch{op}Status", strategic=not custom
                ),
                "parameters": path_params + name_param,
            }
    closure: set[str] = set()
    for name in wanted:
        closure.add(name)
        _refs(builtins.definitions().get(name, {}), closure)
    defs = builtins.definitions()
    for name in sorted(closure):
        if name in defs:
            schemas[name] = _v3_schema(defs[name])
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": f"v{builtins.K8S_VERSION}"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def document_hash(document: Mapping[str, Any]) -> str:
    return hashlib.sha512(json.dumps(document, sort_keys=True).encode()).hexdigest()[:64].upper()


def v2_document(documents: Mapping[str, Mapping[str, Any]]) -> JsonDict:
    """A Swagger 2.0 document (JSON) merged from the v3 group-version documents."""
    definitions: JsonDict = {}
    paths: JsonDict = {}

    def to_v2(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {
                key: (
                    "#/definitions/" + str(item).rsplit("/", 1)[-1]
                    if key == "$ref"
                    else to_v2(item)
                )
                for key, item in value.items()
            }
        if isinstance(value, list):
            return [to_v2(item) for item in value]
        return value

    for document in documents.values():
        for name, schema in (document.get("components") or {}).get("schemas", {}).items():
            definitions[name] = to_v2(schema)
        for path, item in (document.get("paths") or {}).items():
            paths[path] = {
                verb: {
                    "operationId": op.get("operationId"),
                    "parameters": [
                        {"name": p["name"], "in": p["in"], "type": p["schema"]["type"]}
                        | ({"required": True} if p.get("required") else {})
                        for p in op.get("parameters") or []
                    ],
                    "responses": {"200": {"description": "OK"}},
                    "x-kubernetes-action": op.get("x-kubernetes-action"),
                    "x-kubernetes-group-version-kind": op.get("x-kubernetes-group-version-kind"),
                }
                for verb, op in item.items()
                if verb != "parameters"
            }
    return {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": f"v{builtins.K8S_VERSION}"},
        "paths": paths,
        "definitions": definitions,
    }
