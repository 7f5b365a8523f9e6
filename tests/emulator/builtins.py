"""
Built-in kinds as kube-apiserver decodes, defaults and validates them.

The schemas are Kubernetes' own OpenAPI definitions as shipped (converted to JSON
schema) by the ``kubernetes-validate`` package (:data:`K8S_VERSION`, 1.32 or the newest
it has below). With them, :class:`BuiltinSchemas` re-enacts the decoding of a request
body into the Go types:

* a field of the wrong JSON type (``"backoffLimit": "6"``) fails the decoding:
  **400 BadRequest** ``Job in version "v1" cannot be handled as a Job: json: cannot
  unmarshal string into Go struct field JobSpec.spec.backoffLimit of type int32``
  (also malformed quantities, timestamps and base64 data);
* unknown fields are dropped, with a ``Warning`` header (``unknown field "spec.foo"``)
  unless ``fieldValidation=Ignore``; with ``fieldValidation=Strict`` they are a 400
  (``strict decoding error: unknown field "spec.foo"``);
* ``null`` is the Go zero value (no error).

Then the defaulting of the kinds kubetune creates (Jobs, Pods, Deployments, Services,
ConfigMaps, ...; see :func:`apply_defaults`) and :func:`validate` -- the fields the
OpenAPI definitions mark as required plus a hand-written subset of the server's Go
validation (``pkg/apis/*/validation``) for what the operator and its chart create:
object names (DNS-1123 subdomains, DNS-1035 labels for Services, DNS-1123 labels for
Namespaces), labels, annotations, owner references, finalizers, Job specs (restart
policy, completions, pod failure policy, immutable template), pod specs (containers,
images, ports, env, volumes and mounts, resources, tolerations, security context),
Services, ConfigMaps/Secrets, Deployments, RBAC, Leases, Events, PDBs, NetworkPolicies.
Errors are :class:`~tests.emulator.apivalidation.FieldError` s worded like the server's.

This module is an independent test oracle: it must not import the code under test.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

import kubernetes_validate.utils as kv_utils

from tests.emulator.apivalidation import (
    FieldError,
    check_name,
    duplicate,
    forbidden,
    go_value,
    invalid,
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_env_var_name,
    is_port_number,
    is_qualified_name,
    join_path,
    key_path,
    not_found,
    required,
    too_long,
    unsupported,
    validate_annotations,
    validate_labels,
    validate_object_meta,
    validate_object_meta_update,
)

JsonDict = dict[str, Any]


def _pick_version(wanted: str = "1.32") -> str:
    """The newest Kubernetes version of kubernetes-validate not newer than ``wanted``."""
    versions = kv_utils.all_versions()

    def key(v: str) -> tuple[int, ...]:
        return tuple(int(x) for x in v.split(".") if x.isdigit())

    older = [v for v in versions if key(v)[:2] <= key(wanted)[:2]]
    return str((older or versions)[-1])


#: The Kubernetes version whose schemas are used (from the kubernetes-validate package).
K8S_VERSION = _pick_version()


@functools.cache
def _definitions(version: str = K8S_VERSION) -> dict[str, JsonDict]:
    data = kv_utils.schema_contents(
        f"kubernetes-json-schema/v{version}-local/_definitions.json", version
    )
    return dict(data["$defs"])


@functools.cache
def _gvk_index(version: str = K8S_VERSION) -> dict[tuple[str, str, str], str]:
    index: dict[tuple[str, str, str], str] = {}
    for name, definition in _definitions(version).items():
        for gvk in definition.get("x-kubernetes-group-version-kind") or []:
            index[(gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", ""))] = name
    return index


def definition_name(group: str, version: str, kind: str) -> str | None:
    """The OpenAPI definition of a kind (``io.k8s.api.batch.v1.Job``), if built in."""
    return _gvk_index().get((group, version, kind))


def definitions() -> dict[str, JsonDict]:
    """All OpenAPI definitions of :data:`K8S_VERSION` (JSON-schema flavoured)."""
    return _definitions()


# --------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------


class DecodeError(Exception):
    """The body cannot be decoded into the Go type (answered as 400 BadRequest)."""


_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE
)


def _types(schema: Mapping[str, Any]) -> set[str]:
    type_ = schema.get("type")
    if type_ is None:
        return set()
    types = {type_} if isinstance(type_, str) else set(type_)
    return types - {"null"}


def _go_json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return f"number {json.dumps(value)}"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    return "null"


def _short(ref_name: str) -> str:
    """``io.k8s.api.core.v1.Container`` -> ``v1.Container``."""
    parts = ref_name.split(".")
    return ".".join(parts[-2:])


@dataclass
class Decoded:
    unknown: list[str] = field(default_factory=list)


class _Decoder:
    def __init__(self, defs: Mapping[str, JsonDict]) -> None:
        self.defs = defs

    def resolve(self, schema: Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
        ref = schema.get("$ref")
        if not ref:
            return schema, None
        name = str(ref).rsplit("/", 1)[-1]
        return self.defs[name], name

    def go_type(self, schema: Mapping[str, Any]) -> str:
        target, name = self.resolve(schema)
        if name and "properties" in target:
            return _short(name)
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            return "resource.Quantity"
        if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
            return "intstr.IntOrString"
        types = _types(target)
        if "array" in types:
            return "[]" + self.go_type(target.get("items") or {})
        if "object" in types:
            additional = target.get("additionalProperties")
            if isinstance(additional, Mapping):
                return "map[string]" + self.go_type(additional)
            return "map[string]interface {}"
        if "integer" in types:
            return {"int32": "int32", "int64": "int64"}.get(str(target.get("format")), "int")
        if "number" in types:
            return "float64"
        if "boolean" in types:
            return "bool"
        if "string" in types:
            fmt = target.get("format")
            return "[]uint8" if fmt == "byte" else "v1.Time" if fmt == "date-time" else "string"
        return "interface {}"

    def decode(
        self,
        value: Any,
        schema: Mapping[str, Any],
        path: str,
        go_path: str,
        struct: str,
        out: Decoded,
    ) -> None:
        if value is None:
            return
        if isinstance(value, dict):
            for key in [k for k, v in value.items() if v is None]:
                del value[key]  # null is Go's zero value, omitted when the object is stored
        target, name = self.resolve(schema)
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                self._type_error(value, schema, go_path, struct)
            if isinstance(value, str) and not _QUANTITY_RE.match(value.strip()):
                raise DecodeError(
                    "quantities must match the regular expression"
                    " '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
                )
            return
        if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                self._type_error(value, schema, go_path, struct)
            return
        types = _types(target)
        if not types:
            return  # any JSON (RawExtension, JSON, JSONSchemaPropsOrBool, ...)
        if isinstance(value, dict) and "object" in types:
            props: Mapping[str, Any] = target.get("properties") or {}
            additional = target.get("additionalProperties")
            here_struct = _short(name).split(".")[-1] if name and props else struct
            for key in list(value):
                child_path = join_path(path, key)
                child_go = f"{go_path}.{key}" if go_path else key
                if key in props:
                    self.decode(value[key], props[key], child_path, child_go, here_struct, out)
                elif isinstance(additional, Mapping):
                    self.decode(
                        value[key], additional, key_path(path, key), go_path, here_struct, out
                    )
                elif additional is True or not props:
                    continue
                else:
                    del value[key]
                    out.unknown.append(child_path)
            return
        if isinstance(value, list) and "array" in types:
            items = target.get("items") or {}
            for index, item in enumerate(value):
                self.decode(item, items, join_path(path, index), go_path, struct, out)
            return
        ok = (
            ("string" in types and isinstance(value, str))
            or ("boolean" in types and isinstance(value, bool))
            or (
                "integer" in types
                and not isinstance(value, bool)
                and (isinstance(value, int) or (isinstance(value, float) and value.is_integer()))
            )
            or (
                "number" in types
                and isinstance(value, (int, float))
                and not isinstance(value, bool)
            )
        )
        if not ok:
            self._type_error(value, schema, go_path, struct)
        if isinstance(value, str):
            fmt = target.get("format")
            if fmt == "date-time" and value and not _RFC3339_RE.match(value):
                raise DecodeError(
                    f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot parse'
                    f' "{value}" as "2006"'
                )
            if fmt == "byte":
                try:
                    base64.b64decode(value, validate=True)
                except ValueError:
                    raise DecodeError(
                        f"illegal base64 data at input byte {_first_bad_base64(value)}"
                    ) from None
        if isinstance(value, int) and not isinstance(value, bool):
            fmt = target.get("format")
            limit = {"int32": 2**31, "int64": 2**63}.get(str(fmt))
            if limit and not -limit <= value < limit:
                raise DecodeError(
                    f"json: cannot unmarshal number {value} into Go struct field"
                    f" {struct}.{go_path} of type {fmt}"
                )

    def _type_error(self, value: Any, schema: Mapping[str, Any], go_path: str, struct: str) -> None:
        raise DecodeError(
            f"json: cannot unmarshal {_go_json_type(value)} into Go struct field"
            f" {struct}.{go_path} of type {self.go_type(schema)}"
        )

    def required(self, value: Any, schema: Mapping[str, Any], path: str) -> list[FieldError]:
        """The fields the OpenAPI definitions mark as required (after defaulting)."""
        if value is None:
            return []
        target, _ = self.resolve(schema)
        errors: list[FieldError] = []
        if isinstance(value, Mapping):
            for key in target.get("required") or []:
                if key not in value or value[key] is None:
                    errors.append(required(join_path(path, key)))
            props: Mapping[str, Any] = target.get("properties") or {}
            additional = target.get("additionalProperties")
            for key, child in value.items():
                if key in props:
                    errors.extend(self.required(child, props[key], join_path(path, key)))
                elif isinstance(additional, Mapping):
                    errors.extend(self.required(child, additional, key_path(path, key)))
        elif isinstance(value, list):
            items = target.get("items") or {}
            for index, item in enumerate(value):
                errors.extend(self.required(item, items, join_path(path, index)))
        return errors


def _first_bad_base64(value: str) -> int:
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    for index, char in enumerate(value):
        if char not in alphabet:
            return index
    return len(value)


def decode(obj: JsonDict, group: str, version: str, kind: str) -> Decoded:
    """Decode ``obj`` (in place) as the Go type of the kind: prune unknown fields,
    raise :class:`DecodeError` on wrong types (as kube-apiserver's JSON decoder)."""
    out = Decoded()
    name = definition_name(group, version, kind)
    if name is None:
        return out
    decoder = _Decoder(_definitions())
    decoder.decode(obj, {"$ref": f"#/$defs/{name}"}, "", "", kind, out)
    return out


def required_fields(obj: JsonDict, group: str, version: str, kind: str) -> list[FieldError]:
    name = definition_name(group, version, kind)
    if name is None:
        return []
    return _Decoder(_definitions()).required(obj, {"$ref": f"#/$defs/{name}"}, "")


def decode_error_message(kind: str, version: str, error: Exception | str) -> str:
    """The 400 message: ``Job in version "v1" cannot be handled as a Job: <error>``."""
    return f'{kind} in version "{version}" cannot be handled as a {kind}: {error}'


# --------------------------------------------------------------------------------------------------
# Quantities
# --------------------------------------------------------------------------------------------------

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
}


def parse_quantity(value: Any) -> Decimal | None:
    """A resource quantity as a number (``None`` when it does not parse)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if not isinstance(value, str):
        return None
    m = re.fullmatch(
        r"([+-]?(?:\d+\.?\d*|\.\d+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?", value
    )
    if not m:
        return None
    try:
        number = Decimal(m[1])
    except InvalidOperation:
        return None
    suffix = m[2] or ""
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    return number * (Decimal(10) ** int(suffix[1:]))


# --------------------------------------------------------------------------------------------------
# Defaulting (the parts of pkg/apis/*/v1/defaults.go that matter for what kubetune creates)
# --------------------------------------------------------------------------------------------------


def default_pod_spec(spec: JsonDict, *, in_pod: bool = False) -> None:
    """``SetDefaults_PodSpec`` & ``SetDefaults_Container`` (& ``SetDefaults_Pod`` for Pods)."""
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for key in ("initContainers", "containers"):
        for container in spec.get(key) or []:
            if isinstance(container, dict):
                _default_container(container, in_pod=in_pod)
    for volume in spec.get("volumes") or []:
        if not isinstance(volume, dict):
            continue
        for source in ("configMap", "secret", "downwardAPI", "projected"):
            if isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 420)
        if not any(key != "name" for key in volume):
            volume["emptyDir"] = {}
    for toleration in spec.get("tolerations") or []:
        if isinstance(toleration, dict) and toleration.get("key") and "operator" not in toleration:
            toleration["operator"] = "Equal"


def _default_container(container: JsonDict, *, in_pod: bool) -> None:
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    if "imagePullPolicy" not in container and isinstance(container.get("image"), str):
        image = container["image"]
        tag = image.rsplit("/", 1)[-1]
        latest = "@" not in image and (":" not in tag or tag.endswith(":latest"))
        container["imagePullPolicy"] = "Always" if latest else "IfNotPresent"
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for env in container.get("env") or []:
        ref = (
            ((env or {}).get("valueFrom") or {}).get("fieldRef") if isinstance(env, dict) else None
        )
        if isinstance(ref, dict):
            ref.setdefault("apiVersion", "v1")
    resources = container.setdefault("resources", {})
    if in_pod and isinstance(resources, dict) and isinstance(resources.get("limits"), dict):
        requests = resources.setdefault("requests", {})
        if isinstance(requests, dict):
            for name, amount in resources["limits"].items():
                requests.setdefault(name, amount)


def apply_defaults(group: str, plural: str, obj: JsonDict) -> None:
    """Default a built-in object in place (after decoding, before validation)."""
    spec = obj.get("spec")
    match (group, plural):
        case ("", "pods"):
            if isinstance(spec, dict):
                default_pod_spec(spec, in_pod=True)
                spec.setdefault("enableServiceLinks", True)
        case ("batch", "jobs"):
            spec = obj.setdefault("spec", {}) if spec is None else spec
            if isinstance(spec, dict):
                template = spec.setdefault("template", {})  # the Go zero value is defaulted too
                if isinstance(template, dict):
                    template.setdefault("spec", {})
                if isinstance(template, dict) and isinstance(template.get("spec"), dict):
                    default_pod_spec(template["spec"])
                policy = spec.get("podFailurePolicy")
                for rule in (policy or {}).get("rules") or [] if isinstance(policy, dict) else []:
                    for pattern in (rule or {}).get("onPodConditions") or []:
                        if isinstance(pattern, dict):
                            pattern.setdefault("status", "True")
                if "podReplacementPolicy" not in spec:
                    spec["podReplacementPolicy"] = (
                        "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed"
                    )
        case ("apps", "deployments"):
            if isinstance(spec, dict):
                spec.setdefault("replicas", 1)
                spec.setdefault("revisionHistoryLimit", 10)
                spec.setdefault("progressDeadlineSeconds", 600)
                strategy = spec.setdefault("strategy", {})
                if isinstance(strategy, dict):
                    strategy.setdefault("type", "RollingUpdate")
                    if strategy["type"] == "RollingUpdate":
                        rolling = strategy.setdefault("rollingUpdate", {})
                        if isinstance(rolling, dict):
                            rolling.setdefault("maxUnavailable", "25%")
                            rolling.setdefault("maxSurge", "25%")
                template = spec.get("template")
                if isinstance(template, dict) and isinstance(template.get("spec"), dict):
                    default_pod_spec(template["spec"])
        case ("", "services"):
            if isinstance(spec, dict):
                spec.setdefault("type", "ClusterIP")
                spec.setdefault("sessionAffinity", "None")
                for port in spec.get("ports") or []:
                    if isinstance(port, dict):
                        port.setdefault("protocol", "TCP")
                        if "targetPort" not in port and "port" in port:
                            port["targetPort"] = port["port"]
        case ("", "secrets"):
            obj.setdefault("type", "Opaque")
        case ("", "namespaces"):
            if isinstance(spec, dict) or spec is None:
                obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        case ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings"):
            for subject in obj.get("subjects") or []:
                # SetDefaults_Subject ("" for ServiceAccounts is omitted from the JSON)
                if (
                    isinstance(subject, dict)
                    and not subject.get("apiGroup")
                    and subject.get("kind") in ("User", "Group")
                ):
                    subject["apiGroup"] = "rbac.authorization.k8s.io"


# --------------------------------------------------------------------------------------------------
# Validation (pkg/apis/*/validation: the parts that matter for what kubetune & its chart create)
# --------------------------------------------------------------------------------------------------

#: How each built-in kind's ``metadata.name`` is validated.
NAME_CHECKS: dict[tuple[str, str], Callable[[str], list[str]]] = {
    ("", "services"): is_dns1035_label,
    ("", "namespaces"): is_dns1123_label,
}

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_PROTOCOLS = ("SCTP", "TCP", "UDP")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_FIELD_REF_PATHS = (
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
)
_VOLUME_SOURCES = (
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
)
_IANA_SVC_NAME = re.compile(r"^[-a-z0-9]+$")
_MAX_CONFIG_SIZE = 1024 * 1024
_POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations`"
    " (only additions to existing tolerations),`spec.terminationGracePeriodSeconds`"
    " (allow it to be set to 1 if it was previously negative)"
)


def _is_iana_svc_name(value: str) -> list[str]:
    errors = []
    if len(value) > 15:
        errors.append("must be no more than 15 characters")
    if not _IANA_SVC_NAME.match(value):
        errors.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        errors.append("must not contain consecutive hyphens")
    if not re.search(r"[a-z]", value):
        errors.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        errors.append("must not begin or end with a hyphen")
    return errors


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _validate_container_ports(ports: Any, path: str, seen_names: set[str]) -> list[FieldError]:
    errors: list[FieldError] = []
    for index, port in enumerate(ports or []):
        if not isinstance(port, Mapping):
            continue
        here = join_path(path, index)
        name = port.get("name")
        if name:
            for msg in _is_iana_svc_name(str(name)):
                errors.append(invalid(join_path(here, "name"), name, msg))
            if name in seen_names:
                errors.append(duplicate(join_path(here, "name"), name))
            seen_names.add(str(name))
        number = port.get("containerPort")
        if number is None or number == 0:
            errors.append(required(join_path(here, "containerPort")))
        elif not is_port_number(number):
            errors.append(
                invalid(
                    join_path(here, "containerPort"),
                    number,
                    "must be between 1 and 65535, inclusive",
                )
            )
        host_port = port.get("hostPort")
        if host_port not in (None, 0) and not is_port_number(host_port):
            errors.append(
                invalid(
                    join_path(here, "hostPort"), host_port, "must be between 1 and 65535, inclusive"
                )
            )
        protocol = port.get("protocol")
        if protocol is not None and protocol not in _PROTOCOLS:
            errors.append(unsupported(join_path(here, "protocol"), protocol, _PROTOCOLS))
    return errors


def _validate_env(env: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for index, var in enumerate(env or []):
        if not isinstance(var, Mapping):
            continue
        here = join_path(path, index)
        name = var.get("name")
        if not name:
            errors.append(required(join_path(here, "name")))
        else:
            errors.extend(
                invalid(join_path(here, "name"), name, msg) for msg in is_env_var_name(name)
            )
        source = var.get("valueFrom")
        if source is None:
            continue
        from_path = join_path(here, "valueFrom")
        kinds = [
            k
            for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
            if source.get(k)
        ]
        if var.get("value"):
            errors.append(invalid(from_path, "", "may not be specified when `value` is not empty"))
        if not kinds:
            errors.append(
                invalid(
                    from_path,
                    "",
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef`"
                    " or `secretKeyRef`",
                )
            )
        elif len(kinds) > 1:
            errors.append(
                invalid(from_path, "", "may not have more than one field specified at a time")
            )
        ref = source.get("fieldRef")
        if isinstance(ref, Mapping):
            field_path = str(ref.get("fieldPath") or "")
            ref_path = join_path(join_path(from_path, "fieldRef"), "fieldPath")
            if not field_path:
                errors.append(required(ref_path))
            else:
                m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", field_path)
                if m:
                    errors.extend(
                        invalid(ref_path, m[2], msg) for msg in is_qualified_name(m[2].lower())
                    )
                elif field_path not in (
                    *_FIELD_REF_PATHS,
                    "metadata.labels",
                    "metadata.annotations",
                ):
                    errors.append(unsupported(ref_path, field_path, _FIELD_REF_PATHS))
        for ref_name in ("configMapKeyRef", "secretKeyRef"):
            ref = source.get(ref_name)
            if isinstance(ref, Mapping):
                ref_path = join_path(from_path, ref_name)
                if not ref.get("key"):
                    errors.append(required(join_path(ref_path, "key")))
                else:
                    errors.extend(
                        invalid(join_path(ref_path, "key"), ref["key"], msg)
                        for msg in is_config_map_key(ref["key"])
                    )
                if not ref.get("name"):
                    errors.append(required(join_path(ref_path, "name")))
    return errors


def _validate_resources(resources: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(resources, Mapping):
        return errors
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    for kind, amounts in (("limits", limits), ("requests", requests)):
        for name, amount in (amounts or {}).items():
            here = key_path(join_path(path, kind), name)
            number = parse_quantity(amount)
            if number is None:
                continue
            if number < 0:
                errors.append(invalid(here, amount, "must be greater than or equal to 0"))
            if (
                "/" in name
                and not name.startswith("kubernetes.io/")
                and number != number.to_integral_value()
            ):
                errors.append(invalid(here, amount, "must be an integer"))
    for name, amount in (requests or {}).items():
        request = parse_quantity(amount)
        if name in limits:
            limit = parse_quantity(limits[name])
            if request is not None and limit is not None and request > limit:
                here = key_path(join_path(path, "requests"), name)
                errors.append(
                    invalid(
                        here,
                        amount,
                        f"must be less than or equal to {name} limit of {limits[name]}",
                    )
                )
        if "/" in name and not name.startswith(("kubernetes.io/", "requests.")):
            here = key_path(join_path(path, "requests"), name)
            if name not in limits:
                errors.append(forbidden(here, "Limit must be set for non overcommitable resources"))
            elif parse_quantity(limits[name]) != request:
                errors.append(
                    invalid(here, amount, f"must be equal to {name} limit of {limits[name]}")
                )
    return errors


def _validate_security_context(context: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(context, Mapping):
        return errors
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        value = _int(context.get(key))
        if value is not None and value < 0:
            errors.append(
                invalid(join_path(path, key), value, "must be between 0 and 2147483647, inclusive")
            )
    profile = context.get("seccompProfile")
    if isinstance(profile, Mapping):
        here = join_path(path, "seccompProfile")
        kind = profile.get("type")
        if kind not in ("Localhost", "RuntimeDefault", "Unconfined"):
            errors.append(
                unsupported(
                    join_path(here, "type"), kind, ("Localhost", "RuntimeDefault", "Unconfined")
                )
            )
        if kind == "Localhost" and not profile.get("localhostProfile"):
            errors.append(
                required(
                    join_path(here, "localhostProfile"),
                    "must be set when seccomp type is Localhost",
                )
            )
        if kind != "Localhost" and profile.get("localhostProfile"):
            errors.append(
                invalid(
                    join_path(here, "localhostProfile"),
                    profile["localhostProfile"],
                    "can only be set when seccomp type is Localhost",
                )
            )
    return errors


def _validate_volumes(volumes: Any, path: str) -> tuple[list[FieldError], set[str]]:
    errors: list[FieldError] = []
    names: set[str] = set()
    for index, volume in enumerate(volumes or []):
        if not isinstance(volume, Mapping):
            continue
        here = join_path(path, index)
        name = volume.get("name")
        if not name:
            errors.append(required(join_path(here, "name")))
        else:
            errors.extend(check_name(is_dns1123_label, join_path(here, "name"), name))
            if name in names:
                errors.append(duplicate(join_path(here, "name"), name))
            names.add(name)
        sources = [k for k in _VOLUME_SOURCES if volume.get(k) is not None]
        if not sources:
            errors.append(required(here, "must specify a volume type"))
        for extra in sources[1:]:
            errors.append(
                forbidden(join_path(here, extra), "may not specify more than 1 volume type")
            )
        empty_dir = volume.get("emptyDir")
        if isinstance(empty_dir, Mapping):
            medium = empty_dir.get("medium")
            if medium not in (None, "", "Memory", "HugePages") and not str(medium).startswith(
                "HugePages-"
            ):
                errors.append(
                    unsupported(
                        join_path(join_path(here, "emptyDir"), "medium"),
                        medium,
                        ("", "Memory", "HugePages"),
                    )
                )
        for source in ("configMap", "secret"):
            ref = volume.get(source)
            if not isinstance(ref, Mapping):
                continue
            source_path = join_path(here, source)
            if source == "configMap" and not ref.get("name"):
                errors.append(required(join_path(source_path, "name")))
            for item_index, item in enumerate(ref.get("items") or []):
                item_path = join_path(join_path(source_path, "items"), item_index)
                if not isinstance(item, Mapping):
                    continue
                if not item.get("key"):
                    errors.append(required(join_path(item_path, "key")))
                rel = str(item.get("path") or "")
                if not rel:
                    errors.append(required(join_path(item_path, "path")))
                elif rel.startswith("/"):
                    errors.append(
                        invalid(join_path(item_path, "path"), rel, "must be a relative path")
                    )
                elif ".." in rel.split("/"):
                    errors.append(
                        invalid(join_path(item_path, "path"), rel, "must not contain '..'")
                    )
            mode = _int(ref.get("defaultMode"))
            if mode is not None and not 0 <= mode <= 0o777:
                errors.append(
                    invalid(
                        join_path(source_path, "defaultMode"),
                        mode,
                        "must be a number between 0 and 0777 (octal), both inclusive",
                    )
                )
        claim = volume.get("persistentVolumeClaim")
        if isinstance(claim, Mapping) and not claim.get("claimName"):
            errors.append(
                required(join_path(join_path(here, "persistentVolumeClaim"), "claimName"))
            )
    return errors, names


def _validate_containers(
    containers: Any, path: str, volumes: set[str], seen_names: set[str], port_names: set[str]
) -> list[FieldError]:
    errors: list[FieldError] = []
    for index, container in enumerate(containers or []):
        if not isinstance(container, Mapping):
            continue
        here = join_path(path, index)
        name = container.get("name")
        if not name:
            errors.append(required(join_path(here, "name")))
        else:
            errors.extend(check_name(is_dns1123_label, join_path(here, "name"), name))
            if name in seen_names:
                errors.append(duplicate(join_path(here, "name"), name))
            seen_names.add(name)
        image = container.get("image")
        if not image:
            errors.append(required(join_path(here, "image")))
        elif image != image.strip():
            errors.append(
                invalid(
                    join_path(here, "image"), image, "must not have leading or trailing whitespace"
                )
            )
        policy = container.get("imagePullPolicy")
        if policy is not None and policy not in _PULL_POLICIES:
            errors.append(unsupported(join_path(here, "imagePullPolicy"), policy, _PULL_POLICIES))
        message_policy = container.get("terminationMessagePolicy")
        if message_policy is not None and message_policy not in ("File", "FallbackToLogsOnError"):
            errors.append(
                unsupported(
                    join_path(here, "terminationMessagePolicy"),
                    message_policy,
                    ("File", "FallbackToLogsOnError"),
                )
            )
        errors.extend(
            _validate_container_ports(container.get("ports"), join_path(here, "ports"), port_names)
        )
        errors.extend(_validate_env(container.get("env"), join_path(here, "env")))
        errors.extend(_validate_resources(container.get("resources"), join_path(here, "resources")))
        errors.extend(
            _validate_security_context(
                container.get("securityContext"), join_path(here, "securityContext")
            )
        )
        mount_paths: set[str] = set()
        for mount_index, mount in enumerate(container.get("volumeMounts") or []):
            if not isinstance(mount, Mapping):
                continue
            mount_path = join_path(join_path(here, "volumeMounts"), mount_index)
            mount_name = mount.get("name")
            if not mount_name:
                errors.append(required(join_path(mount_path, "name")))
            elif mount_name not in volumes:
                errors.append(not_found(join_path(mount_path, "name"), mount_name))
            target = mount.get("mountPath")
            if not target:
                errors.append(required(join_path(mount_path, "mountPath")))
            elif target in mount_paths:
                errors.append(invalid(join_path(mount_path, "mountPath"), target, "must be unique"))
            else:
                mount_paths.add(target)
            sub = mount.get("subPath")
            if sub and (str(sub).startswith("/") or ".." in str(sub).split("/")):
                errors.append(
                    invalid(
                        join_path(mount_path, "subPath"),
                        sub,
                        "must be a relative path without '..'",
                    )
                )
    return errors


def validate_pod_spec(
    spec: Any, path: str, *, restart_policies: tuple[str, ...] = _RESTART_POLICIES
) -> list[FieldError]:
    """``ValidatePodSpec`` (the subset that matters here)."""
    errors: list[FieldError] = []
    if not isinstance(spec, Mapping):
        return [required(path)]
    volume_errors, volumes = _validate_volumes(spec.get("volumes"), join_path(path, "volumes"))
    errors.extend(volume_errors)
    names: set[str] = set()
    port_names: set[str] = set()
    if not spec.get("containers"):
        errors.append(required(join_path(path, "containers")))
    errors.extend(
        _validate_containers(
            spec.get("initContainers"),
            join_path(path, "initContainers"),
            volumes,
            names,
            port_names,
        )
    )
    errors.extend(
        _validate_containers(
            spec.get("containers"), join_path(path, "containers"), volumes, names, port_names
        )
    )
    policy = spec.get("restartPolicy")
    if policy not in restart_policies:
        if policy in (None, "") and restart_policies != _RESTART_POLICIES:
            shown = ", ".join(go_value(p) for p in restart_policies)
            errors.append(required(join_path(path, "restartPolicy"), f"valid values: {shown}"))
        else:
            errors.append(unsupported(join_path(path, "restartPolicy"), policy, restart_policies))
    dns = spec.get("dnsPolicy")
    if dns is not None and dns not in (
        "ClusterFirstWithHostNet",
        "ClusterFirst",
        "Default",
        "None",
    ):
        errors.append(
            unsupported(
                join_path(path, "dnsPolicy"),
                dns,
                ("ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"),
            )
        )
    for key, check in (
        ("serviceAccountName", is_dns1123_subdomain),
        ("priorityClassName", is_dns1123_subdomain),
        ("subdomain", is_dns1123_label),
        ("hostname", is_dns1123_label),
    ):
        value = spec.get(key)
        if value:
            errors.extend(check_name(check, join_path(path, key), value))
    grace = _int(spec.get("terminationGracePeriodSeconds"))
    if grace is not None and grace < 0:
        errors.append(
            invalid(
                join_path(path, "terminationGracePeriodSeconds"),
                grace,
                "must be greater than or equal to 0",
            )
        )
    deadline = _int(spec.get("activeDeadlineSeconds"))
    if deadline is not None and deadline <= 0:
        errors.append(
            invalid(
                join_path(path, "activeDeadlineSeconds"),
                deadline,
                "must be between 1 and 2147483647, inclusive",
            )
        )
    errors.extend(validate_labels(spec.get("nodeSelector"), join_path(path, "nodeSelector")))
    errors.extend(
        _validate_security_context(spec.get("securityContext"), join_path(path, "securityContext"))
    )
    for index, secret in enumerate(spec.get("imagePullSecrets") or []):
        if isinstance(secret, Mapping) and not secret.get("name"):
            errors.append(
                required(join_path(join_path(join_path(path, "imagePullSecrets"), index), "name"))
            )
    for index, toleration in enumerate(spec.get("tolerations") or []):
        if not isinstance(toleration, Mapping):
            continue
        here = join_path(join_path(path, "tolerations"), index)
        tol_key = toleration.get("key")
        operator = toleration.get("operator") or "Equal"
        if tol_key:
            errors.extend(
                invalid(join_path(here, "key"), tol_key, msg) for msg in is_qualified_name(tol_key)
            )
        elif operator != "Exists":
            errors.append(
                invalid(
                    join_path(here, "operator"),
                    operator,
                    "operator must be Exists when `key` is empty, which means"
                    ' "match all values and all keys"',
                )
            )
        if operator == "Exists" and toleration.get("value"):
            errors.append(
                invalid(
                    join_path(here, "operator"),
                    toleration.get("value"),
                    "value must be empty when `operator` is 'Exists'",
                )
            )
        elif operator not in ("Equal", "Exists"):
            errors.append(unsupported(join_path(here, "operator"), operator, ("Equal", "Exists")))
        effect = toleration.get("effect")
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errors.append(
                unsupported(
                    join_path(here, "effect"),
                    effect,
                    ("NoExecute", "NoSchedule", "PreferNoSchedule"),
                )
            )
        if toleration.get("tolerationSeconds") is not None and effect != "NoExecute":
            errors.append(
                invalid(
                    join_path(here, "effect"),
                    effect,
                    "effect must be 'NoExecute' when `tolerationSeconds` is set",
                )
            )
    return errors


def _validate_pod_template(template: Any, path: str, **kw: Any) -> list[FieldError]:
    if not isinstance(template, Mapping):
        return [required(path)]
    errors: list[FieldError] = []
    meta = template.get("metadata") or {}
    if isinstance(meta, Mapping):
        meta_path = join_path(path, "metadata")
        errors.extend(validate_labels(meta.get("labels"), join_path(meta_path, "labels")))
        errors.extend(
            validate_annotations(meta.get("annotations"), join_path(meta_path, "annotations"))
        )
    errors.extend(validate_pod_spec(template.get("spec"), join_path(path, "spec"), **kw))
    return errors


def _selector_matches(selector: Any, labels: Mapping[str, Any]) -> bool:
    if not isinstance(selector, Mapping):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        present = key in labels
        if (
            (op == "In" and (not present or labels[key] not in values))
            or (op == "NotIn" and present and labels[key] in values)
            or (op == "Exists" and not present)
            or (op == "DoesNotExist" and present)
        ):
            return False
    return True


def _validate_label_selector(selector: Any, path: str) -> list[FieldError]:
    errors: list[FieldError] = []
    if not isinstance(selector, Mapping):
        return errors
    errors.extend(validate_labels(selector.get("matchLabels"), join_path(path, "matchLabels")))
    for index, expr in enumerate(selector.get("matchExpressions") or []):
        if not isinstance(expr, Mapping):
            continue
        here = join_path(join_path(path, "matchExpressions"), index)
        op = expr.get("operator")
        if op in ("In", "NotIn"):
            if not expr.get("values"):
                errors.append(
                    required(
                        join_path(here, "values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    )
                )
        elif op in ("Exists", "DoesNotExist"):
            if expr.get("values"):
                errors.append(
                    forbidden(
                        join_path(here, "values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    )
                )
        else:
            errors.append(invalid(join_path(here, "operator"), op, "not a valid selector operator"))
    return errors


def _validate_job(job: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = job.get("spec")
    if not isinstance(spec, Mapping):
        return [required("spec")]
    template = spec.get("template")
    errors.extend(
        _validate_pod_template(template, "spec.template", restart_policies=("OnFailure", "Never"))
    )
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        value = _int(spec.get(key))
        if value is not None and value < 0:
            errors.append(
                invalid(join_path("spec", key), value, "must be greater than or equal to 0")
            )
    deadline = _int(spec.get("activeDeadlineSeconds"))
    if deadline is not None and deadline <= 0:
        errors.append(invalid("spec.activeDeadlineSeconds", deadline, "must be greater than 0"))
    mode = spec.get("completionMode")
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        errors.append(unsupported("spec.completionMode", mode, ("NonIndexed", "Indexed")))
    if mode == "Indexed":
        completions = _int(spec.get("completions"))
        if completions is None:
            errors.append(required("spec.completions", "when completion mode is Indexed"))
        elif completions > 100000 and spec.get("backoffLimitPerIndex") is None:
            errors.append(
                invalid(
                    "spec.completions",
                    completions,
                    "must be less than or equal to 100000 when completion mode is Indexed",
                )
            )
        parallelism = _int(spec.get("parallelism"))
        if parallelism is not None and parallelism > 100000:
            errors.append(
                invalid(
                    "spec.parallelism",
                    parallelism,
                    "must be less than or equal to 100000 when completion mode is Indexed",
                )
            )
    selector = spec.get("selector")
    labels = (
        ((template or {}).get("metadata") or {}).get("labels") or {}
        if isinstance(template, Mapping)
        else {}
    )
    if (
        not spec.get("manualSelector")
        and selector is not None
        and not _selector_matches(selector, labels)
    ):
        errors.append(
            invalid(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            )
        )
    errors.extend(_validate_pod_failure_policy(spec, template))
    if old is not None:
        old_spec = old.get("spec") or {}
        for key in ("selector", "completionMode", "podFailurePolicy", "backoffLimitPerIndex"):
            if spec.get(key) != old_spec.get(key):
                errors.append(invalid(join_path("spec", key), spec.get(key), "field is immutable"))
        if spec.get("template") != old_spec.get("template"):
            # only a suspended Job that never started may change its template (its scheduling
            # directives, in the real server; the emulator allows any change then)
            never_started = not (old.get("status") or {}).get("startTime")
            if not (old_spec.get("suspend") and never_started):
                errors.append(invalid("spec.template", spec.get("template"), "field is immutable"))
        completions = spec.get("completions")
        if completions != old_spec.get("completions"):
            elastic = mode == "Indexed" and completions == spec.get("parallelism")
            if not elastic:
                errors.append(invalid("spec.completions", completions, "field is immutable"))
    return errors


def _validate_pod_failure_policy(spec: Mapping[str, Any], template: Any) -> list[FieldError]:
    errors: list[FieldError] = []
    policy = spec.get("podFailurePolicy")
    if not isinstance(policy, Mapping):
        return errors
    path = "spec.podFailurePolicy"
    pod_spec = (template or {}).get("spec") or {} if isinstance(template, Mapping) else {}
    if pod_spec.get("restartPolicy") != "Never":
        errors.append(
            invalid(
                "spec.template.spec.restartPolicy",
                pod_spec.get("restartPolicy"),
                'only "Never" is supported when podFailurePolicy is specified',
            )
        )
    containers = {
        c.get("name")
        for key in ("containers", "initContainers")
        for c in pod_spec.get(key) or []
        if isinstance(c, Mapping)
    }
    rules = policy.get("rules") or []
    if len(rules) > 20:
        errors.append(
            FieldError(
                join_path(path, "rules"), "Too many", len(rules), "must have at most 20 items"
            )
        )
    actions = ("Count", "FailIndex", "FailJob", "Ignore")
    for index, rule in enumerate(rules):
        if not isinstance(rule, Mapping):
            continue
        here = join_path(join_path(path, "rules"), index)
        action = rule.get("action")
        if action not in actions:
            errors.append(unsupported(join_path(here, "action"), action, actions))
        if action == "FailIndex" and spec.get("backoffLimitPerIndex") is None:
            errors.append(
                forbidden(join_path(here, "action"), "requires the backoffLimitPerIndex to be set")
            )
        exit_codes = rule.get("onExitCodes")
        conditions = rule.get("onPodConditions")
        if exit_codes is not None and conditions:
            errors.append(
                invalid(
                    here, "", "specifying both OnExitCodes and OnPodConditions is not supported"
                )
            )
        elif exit_codes is None and not conditions:
            errors.append(
                invalid(here, "", "specifying one of OnExitCodes and OnPodConditions is required")
            )
        if isinstance(exit_codes, Mapping):
            codes_path = join_path(here, "onExitCodes")
            container = exit_codes.get("containerName")
            if container and container not in containers:
                errors.append(
                    invalid(
                        join_path(codes_path, "containerName"),
                        container,
                        "must be one of the container or initContainer names in the pod template",
                    )
                )
            operator = exit_codes.get("operator")
            if operator not in ("In", "NotIn"):
                errors.append(
                    unsupported(join_path(codes_path, "operator"), operator, ("In", "NotIn"))
                )
            values = exit_codes.get("values") or []
            if not values:
                errors.append(
                    invalid(
                        join_path(codes_path, "values"), values, "at least one value is required"
                    )
                )
            if len(values) > 255:
                errors.append(
                    FieldError(
                        join_path(codes_path, "values"),
                        "Too many",
                        len(values),
                        "must have at most 255 items",
                    )
                )
            previous = None
            for value_index, value in enumerate(values):
                value_path = join_path(join_path(codes_path, "values"), value_index)
                if operator == "In" and value == 0:
                    errors.append(invalid(value_path, value, "must not be 0 for the In operator"))
                if previous is not None and isinstance(value, int) and value <= previous:
                    if value == previous:
                        errors.append(duplicate(value_path, value))
                    else:
                        errors.append(invalid(value_path, value, "must be ordered"))
                previous = value if isinstance(value, int) else previous
        for pattern_index, pattern in enumerate(conditions or []):
            if not isinstance(pattern, Mapping):
                continue
            pattern_path = join_path(join_path(here, "onPodConditions"), pattern_index)
            if not pattern.get("type"):
                errors.append(required(join_path(pattern_path, "type")))
            else:
                errors.extend(
                    invalid(join_path(pattern_path, "type"), pattern["type"], msg)
                    for msg in is_qualified_name(pattern["type"])
                )
            if pattern.get("status") not in ("True", "False", "Unknown"):
                errors.append(
                    unsupported(
                        join_path(pattern_path, "status"),
                        pattern.get("status"),
                        ("False", "True", "Unknown"),
                    )
                )
    return errors


def _validate_service(svc: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = svc.get("spec") or {}
    if not isinstance(spec, Mapping):
        return errors
    kind = spec.get("type", "ClusterIP")
    kinds = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
    if kind not in kinds:
        errors.append(unsupported("spec.type", kind, kinds))
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        errors.append(required("spec.ports"))
    names: set[str] = set()
    for index, port in enumerate(ports):
        if not isinstance(port, Mapping):
            continue
        here = join_path("spec.ports", index)
        name = port.get("name")
        if len(ports) > 1 and not name:
            errors.append(required(join_path(here, "name")))
        if name:
            errors.extend(check_name(is_dns1123_label, join_path(here, "name"), name))
            if name in names:
                errors.append(duplicate(join_path(here, "name"), name))
            names.add(name)
        number = port.get("port")
        if not is_port_number(number):
            errors.append(
                invalid(join_path(here, "port"), number, "must be between 1 and 65535, inclusive")
            )
        protocol = port.get("protocol")
        if protocol is not None and protocol not in _PROTOCOLS:
            errors.append(unsupported(join_path(here, "protocol"), protocol, _PROTOCOLS))
        target = port.get("targetPort")
        if isinstance(target, int) and not is_port_number(target) and target != 0:
            errors.append(
                invalid(
                    join_path(here, "targetPort"), target, "must be between 1 and 65535, inclusive"
                )
            )
        if isinstance(target, str):
            errors.extend(
                invalid(join_path(here, "targetPort"), target, msg)
                for msg in _is_iana_svc_name(target)
            )
    errors.extend(validate_labels(spec.get("selector"), "spec.selector"))
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if old_ip and spec.get("clusterIP") not in (None, "", old_ip):
            errors.append(
                invalid("spec.clusterIPs[0]", spec.get("clusterIP"), "may not change once set")
            )
    return errors


def _validate_config_data(
    obj: Mapping[str, Any], kind: str, old: Mapping[str, Any] | None
) -> list[FieldError]:
    errors: list[FieldError] = []
    size = 0
    data = obj.get("data") or {}
    binary = obj.get("binaryData") or {}
    fields = (
        (("data", data), ("binaryData", binary))
        if kind == "ConfigMap"
        else (("data", data), ("stringData", obj.get("stringData") or {}))
    )
    for field_name, values in fields:
        if not isinstance(values, Mapping):
            continue
        for key, value in values.items():
            errors.extend(
                invalid(key_path(field_name, key), key, msg) for msg in is_config_map_key(key)
            )
            if kind == "ConfigMap" and field_name == "binaryData" and key in data:
                errors.append(
                    invalid(key_path("binaryData", key), key, "duplicate of key present in data")
                )
            size += len(value or "") if isinstance(value, str) else 0
    if size > _MAX_CONFIG_SIZE:
        target = "" if kind == "ConfigMap" else "data"
        errors.append(too_long(target, _MAX_CONFIG_SIZE))
    if old is not None and old.get("immutable"):
        for key in ("data", "binaryData", "stringData"):
            if obj.get(key) != old.get(key):
                errors.append(forbidden(key, "field is immutable when `immutable` is set"))
        if not obj.get("immutable"):
            errors.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    if kind == "Secret" and old is not None and obj.get("type") != old.get("type"):
        errors.append(invalid("type", obj.get("type"), "field is immutable"))
    return errors


def _validate_deployment(dep: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = dep.get("spec")
    if not isinstance(spec, Mapping):
        return [required("spec")]
    selector = spec.get("selector")
    template = spec.get("template") or {}
    labels = (
        (template.get("metadata") or {}).get("labels") or {}
        if isinstance(template, Mapping)
        else {}
    )
    if not selector:
        errors.append(required("spec.selector"))
    else:
        errors.extend(_validate_label_selector(selector, "spec.selector"))
        if not (selector.get("matchLabels") or selector.get("matchExpressions")):
            errors.append(
                invalid("spec.selector", selector, "empty selector is invalid for deployment")
            )
        elif not _selector_matches(selector, labels):
            errors.append(
                invalid(
                    "spec.template.metadata.labels",
                    labels,
                    "`selector` does not match template `labels`",
                )
            )
    errors.extend(_validate_pod_template(template, "spec.template", restart_policies=("Always",)))
    for key in ("replicas", "revisionHistoryLimit", "minReadySeconds"):
        value = _int(spec.get(key))
        if value is not None and value < 0:
            errors.append(
                invalid(join_path("spec", key), value, "must be greater than or equal to 0")
            )
    strategy = spec.get("strategy") or {}
    if isinstance(strategy, Mapping) and strategy.get("type") not in (
        None,
        "Recreate",
        "RollingUpdate",
    ):
        errors.append(
            unsupported("spec.strategy.type", strategy.get("type"), ("Recreate", "RollingUpdate"))
        )
    if old is not None and (old.get("spec") or {}).get("selector") != selector:
        errors.append(invalid("spec.selector", selector, "field is immutable"))
    return errors


def _validate_rbac_rules(rules: Any, namespaced: bool, path: str = "rules") -> list[FieldError]:
    errors: list[FieldError] = []
    for index, rule in enumerate(rules or []):
        if not isinstance(rule, Mapping):
            continue
        here = join_path(path, index)
        if not rule.get("verbs"):
            errors.append(
                required(join_path(here, "verbs"), "verbs must contain at least one value")
            )
        urls = rule.get("nonResourceURLs") or []
        if urls:
            if namespaced:
                errors.append(
                    invalid(
                        join_path(here, "nonResourceURLs"),
                        urls,
                        "namespaced rules cannot apply to non-resource URLs",
                    )
                )
            if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
                errors.append(
                    invalid(
                        join_path(here, "nonResourceURLs"),
                        urls,
                        "rules cannot apply to both regular resources and non-resource URLs",
                    )
                )
            continue
        if not rule.get("apiGroups"):
            errors.append(
                required(
                    join_path(here, "apiGroups"),
                    "resource rules must supply at least one api group",
                )
            )
        if not rule.get("resources"):
            errors.append(
                required(
                    join_path(here, "resources"), "resource rules must supply at least one resource"
                )
            )
    return errors


def _validate_binding(
    obj: Mapping[str, Any], old: Mapping[str, Any] | None, cluster: bool
) -> list[FieldError]:
    errors: list[FieldError] = []
    ref = obj.get("roleRef") or {}
    kinds = ("ClusterRole",) if cluster else ("Role", "ClusterRole")
    if ref.get("apiGroup") != "rbac.authorization.k8s.io":
        errors.append(
            unsupported("roleRef.apiGroup", ref.get("apiGroup"), ("rbac.authorization.k8s.io",))
        )
    if ref.get("kind") not in kinds:
        errors.append(unsupported("roleRef.kind", ref.get("kind"), kinds))
    if not ref.get("name"):
        errors.append(required("roleRef.name"))
    for index, subject in enumerate(obj.get("subjects") or []):
        if not isinstance(subject, Mapping):
            continue
        here = join_path("subjects", index)
        kind = subject.get("kind")
        name = subject.get("name")
        if not name:
            errors.append(required(join_path(here, "name")))
        if kind == "ServiceAccount":
            if name:
                errors.extend(check_name(is_dns1123_subdomain, join_path(here, "name"), name))
            if subject.get("apiGroup"):
                errors.append(unsupported(join_path(here, "apiGroup"), subject["apiGroup"], ("",)))
            if cluster and not subject.get("namespace"):
                errors.append(required(join_path(here, "namespace")))
        elif kind in ("User", "Group"):
            if subject.get("apiGroup") != "rbac.authorization.k8s.io":
                errors.append(
                    unsupported(
                        join_path(here, "apiGroup"),
                        subject.get("apiGroup"),
                        ("rbac.authorization.k8s.io",),
                    )
                )
        else:
            errors.append(
                unsupported(join_path(here, "kind"), kind, ("ServiceAccount", "User", "Group"))
            )
    if old is not None and old.get("roleRef") != obj.get("roleRef"):
        errors.append(invalid("roleRef", ref, "cannot change roleRef"))
    return errors


def _validate_event(event: Mapping[str, Any], version_group: str) -> list[FieldError]:
    """``ValidateEventCreate`` for core/v1 and events.k8s.io/v1 Events."""
    errors: list[FieldError] = []
    namespace = (event.get("metadata") or {}).get("namespace") or ""
    if version_group == "events.k8s.io":
        regarding = event.get("regarding") or {}
        if regarding.get("namespace") and regarding.get("namespace") != namespace:
            errors.append(
                invalid(
                    "regarding.namespace",
                    regarding.get("namespace"),
                    "does not match event.namespace",
                )
            )
        if not event.get("eventTime"):
            errors.append(required("eventTime", ""))
        for key, limit in (
            ("reportingController", None),
            ("reportingInstance", 128),
            ("action", 128),
            ("reason", 128),
        ):
            value = event.get(key)
            if not value:
                errors.append(required(key, ""))
            elif limit and len(value) > limit:
                errors.append(invalid(key, "", f"can have at most {limit} characters"))
        if event.get("type") not in ("Normal", "Warning"):
            errors.append(invalid("type", "", "has invalid value: " + str(event.get("type") or "")))
        if len(event.get("note") or "") > 1024:
            errors.append(invalid("note", "", "can have at most 1024 characters"))
        return errors
    involved = event.get("involvedObject") or {}
    involved_ns = involved.get("namespace") or ""
    if not event.get("eventTime"):
        if not involved_ns:
            if namespace not in ("", "default"):
                errors.append(
                    invalid(
                        "involvedObject.namespace", involved_ns, "does not match event.namespace"
                    )
                )
        elif namespace != involved_ns:
            errors.append(
                invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")
            )
    else:
        if not involved_ns and namespace not in ("default", "kube-system"):
            errors.append(
                invalid("involvedObject.namespace", involved_ns, "does not match event.namespace")
            )
        controller = event.get("reportingComponent") or ""
        if not controller:
            errors.append(required("reportingComponent", ""))
        else:
            errors.extend(
                invalid("reportingComponent", controller, msg)
                for msg in is_qualified_name(controller)
            )
        for key, limit in (("reportingInstance", 128), ("action", 128), ("reason", 128)):
            value = event.get(key) or ""
            if not value:
                errors.append(required(key, ""))
            elif len(value) > limit:
                errors.append(invalid(key, "", f"can have at most {limit} characters"))
        if len(event.get("message") or "") > 1024:
            errors.append(invalid("message", "", "can have at most 1024 characters"))
    errors.extend(
        invalid("namespace", namespace, msg) for msg in is_dns1123_subdomain(namespace) if namespace
    )
    return errors


def _validate_lease(lease: Mapping[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = lease.get("spec") or {}
    duration = _int(spec.get("leaseDurationSeconds"))
    if duration is not None and duration <= 0:
        errors.append(invalid("spec.leaseDurationSeconds", duration, "must be greater than 0"))
    transitions = _int(spec.get("leaseTransitions"))
    if transitions is not None and transitions < 0:
        errors.append(
            invalid("spec.leaseTransitions", transitions, "must be greater than or equal to 0")
        )
    return errors


def _validate_pdb(pdb: Mapping[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = pdb.get("spec") or {}
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errors.append(invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
    errors.extend(_validate_label_selector(spec.get("selector"), "spec.selector"))
    return errors


def _validate_network_policy(policy: Mapping[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    spec = policy.get("spec") or {}
    errors.extend(_validate_label_selector(spec.get("podSelector"), "spec.podSelector"))
    for index, kind in enumerate(spec.get("policyTypes") or []):
        if kind not in ("Ingress", "Egress"):
            errors.append(
                unsupported(join_path("spec.policyTypes", index), kind, ("Egress", "Ingress"))
            )
    return errors


def validate(
    group: str,
    version: str,
    plural: str,
    kind: str,
    obj: Mapping[str, Any],
    old: Mapping[str, Any] | None = None,
    *,
    namespaced: bool = True,
    subresource: str | None = None,
) -> list[FieldError]:
    """kube-apiserver's validation of a (decoded, defaulted) built-in object."""
    meta = obj.get("metadata") or {}
    name_check = NAME_CHECKS.get((group, plural), is_dns1123_subdomain)
    errors = validate_object_meta(meta, namespaced=namespaced, name_check=name_check)
    if old is not None:
        errors.extend(validate_object_meta_update(meta, old.get("metadata") or {}))
    errors.extend(required_fields(dict(obj), group, version, kind))
    if subresource == "status":
        return errors
    match (group, plural):
        case ("batch", "jobs"):
            errors.extend(_validate_job(obj, old))
        case ("", "pods"):
            errors.extend(validate_pod_spec(obj.get("spec"), "spec"))
            if old is not None and (obj.get("spec") or {}).get("containers") is not None:
                old_spec, new_spec = old.get("spec") or {}, obj.get("spec") or {}
                mutable = (
                    "activeDeadlineSeconds",
                    "tolerations",
                    "schedulingGates",
                    "terminationGracePeriodSeconds",
                )
                if {
                    k: v for k, v in new_spec.items() if k not in mutable and k != "containers"
                } != {k: v for k, v in old_spec.items() if k not in mutable and k != "containers"}:
                    errors.append(
                        forbidden(
                            "spec",
                            _POD_UPDATE_FORBIDDEN,
                        )
                    )
        case ("", "services"):
            errors.extend(_validate_service(obj, old))
        case ("", "configmaps"):
            errors.extend(_validate_config_data(obj, "ConfigMap", old))
        case ("", "secrets"):
            errors.extend(_validate_config_data(obj, "Secret", old))
        case ("", "serviceaccounts"):
            pass
        case ("apps", "deployments"):
            errors.extend(_validate_deployment(obj, old))
        case ("rbac.authorization.k8s.io", "roles"):
            errors.extend(_validate_rbac_rules(obj.get("rules"), True))
        case ("rbac.authorization.k8s.io", "clusterroles"):
            errors.extend(_validate_rbac_rules(obj.get("rules"), False))
        case ("rbac.authorization.k8s.io", "rolebindings"):
            errors.extend(_validate_binding(obj, old, cluster=False))
        case ("rbac.authorization.k8s.io", "clusterrolebindings"):
            errors.extend(_validate_binding(obj, old, cluster=True))
        case ("", "events") | ("events.k8s.io", "events"):
            errors.extend(_validate_event(obj, group))
        case ("coordination.k8s.io", "leases"):
            errors.extend(_validate_lease(obj))
        case ("policy", "poddisruptionbudgets"):
            errors.extend(_validate_pdb(obj))
        case ("networking.k8s.io", "networkpolicies"):
            errors.extend(_validate_network_policy(obj))
        case ("apiextensions.k8s.io", "customresourcedefinitions"):
            errors.extend(_validate_crd(obj, old))
    return errors


def _validate_crd(crd: Mapping[str, Any], old: Mapping[str, Any] | None) -> list[FieldError]:
    """A few of ``ValidateCustomResourceDefinition``'s checks (not the structural schema)."""
    errors: list[FieldError] = []
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    name = (crd.get("metadata") or {}).get("name", "")
    expected = f"{names.get('plural', '')}.{spec.get('group', '')}"
    if name != expected:
        errors.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Cluster", "Namespaced"):
        errors.append(unsupported("spec.scope", spec.get("scope"), ("Cluster", "Namespaced")))
    versions = spec.get("versions") or []
    if sum(1 for v in versions if isinstance(v, Mapping) and v.get("storage")) != 1:
        errors.append(
            invalid(
                "spec.versions", versions, "must have exactly one version marked as storage version"
            )
        )
    if old is not None and (old.get("spec") or {}).get("scope") != spec.get("scope"):
        errors.append(invalid("spec.scope", spec.get("scope"), "field is immutable"))
    return errors
