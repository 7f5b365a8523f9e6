"""
Resource kinds served by the API emulator: built-ins and CRD-declared ones.

A :class:`ResourceSpec` is the emulator's view of one served
``group/version/plural``: its kind, scope, and whether it has a real
``status`` subresource. :class:`ResourceRegistry` resolves user-friendly
names (``"widgets"``, ``"widgets.kubetune.dev"``, ``"Widget"``, ``"jobs.batch"``,
``"kubetune.dev/v1/widgets"``) to specs.
"""

from __future__ import annotations

import copy
import functools
import pathlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from tests.emulator.tables import Column

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceSpec:
    """One served resource (one group/version/plural)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status_subresource: bool = False
    preferred: bool = True
    verbs: tuple[str, ...] = ALL_VERBS
    #: ``None`` for built-in kinds; a CRD version's ``additionalPrinterColumns`` otherwise
    #: (as :class:`tests.emulator.tables.Column` s; empty when the CRD declares none).
    printer_columns: tuple[Column, ...] | None = None
    #: A CRD version's ``selectableFields`` (field labels, e.g. ``spec.color``).
    selectable_fields: tuple[str, ...] = ()

    @property
    def custom(self) -> bool:
        """Whether the resource comes from a CRD."""
        return self.printer_columns is not None

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> str:
        """``widgets.kubetune.dev`` or ``configmaps`` -- as kube-apiserver names it in errors."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def store_key(self) -> tuple[str, str]:
        """Objects are stored once per group+plural, regardless of the version requested."""
        return (self.group, self.plural)

    def url(self, namespace: str | None = None, name: str | None = None) -> str:
        """The API path of the collection or of one object."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        return base + (f"/{name}" if name is not None else "")


def _core(
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    status: bool = False,
    short: tuple[str, ...] = (),
) -> ResourceSpec:
    return ResourceSpec("", "v1", plural, kind, namespaced, kind.lower(), short, (), status)


def _api(
    group: str,
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    status: bool = False,
    short: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    version: str = "v1",
) -> ResourceSpec:
    return ResourceSpec(
        group, version, plural, kind, namespaced, kind.lower(), short, categories, status
    )


_RBAC = "rbac.authorization.k8s.io"

BUILTIN_RESOURCES: tuple[ResourceSpec, ...] = (
    _core("namespaces", "Namespace", namespaced=False, status=True, short=("ns",)),
    _core("pods", "Pod", status=True, short=("po",)),
    _core("configmaps", "ConfigMap", short=("cm",)),
    _core("secrets", "Secret"),
    _core("services", "Service", status=True, short=("svc",)),
    _core("serviceaccounts", "ServiceAccount", short=("sa",)),
    _core("persistentvolumeclaims", "PersistentVolumeClaim", status=True, short=("pvc",)),
    _core("events", "Event", short=("ev",)),
    _api("batch", "jobs", "Job", status=True, categories=("all",)),
    _api("apps", "deployments", "Deployment", status=True, short=("deploy",), categories=("all",)),
    _api("coordination.k8s.io", "leases", "Lease"),
    _api("events.k8s.io", "events", "Event", short=("ev",)),
    _api(_RBAC, "roles", "Role"),
    _api(_RBAC, "rolebindings", "RoleBinding"),
    _api(_RBAC, "clusterroles", "ClusterRole", namespaced=False),
    _api(_RBAC, "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    _api("policy", "poddisruptionbudgets", "PodDisruptionBudget", status=True, short=("pdb",)),
    _api("networking.k8s.io", "networkpolicies", "NetworkPolicy", short=("netpol",)),
    _api(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        status=True,
        short=("crd", "crds"),
    ),
)


def specs_from_crd(crd: Mapping[str, Any]) -> list[ResourceSpec]:
    """Convert an ``apiextensions.k8s.io/v1`` CRD dict into one spec per served version."""
    spec = crd["spec"]
    names = spec["names"]
    versions = [v for v in spec.get("versions", []) if v.get("served", True)]
    storage = [v["name"] for v in versions if v.get("storage")] or [versions[0]["name"]]
    return [
        ResourceSpec(
            group=spec["group"],
            version=version["name"],
            plural=names["plural"],
            kind=names["kind"],
            namespaced=spec.get("scope", "Namespaced") == "Namespaced",
            singular=names.get("singular") or names["kind"].lower(),
            short_names=tuple(names.get("shortNames", ())),
            categories=tuple(names.get("categories", ())),
            status_subresource="status" in (version.get("subresources") or {}),
            preferred=version["name"] == storage[0],
            printer_columns=tuple(
                Column.from_crd(c) for c in version.get("additionalPrinterColumns") or []
            ),
            selectable_fields=tuple(
                str(f.get("jsonPath", "")).lstrip(".")
                for f in version.get("selectableFields") or []
            ),
        )
        for version in versions
    ]


@dataclass
class ResourceRegistry:
    """All served resources, with lookups by URL parts or by human-friendly names."""

    specs: list[ResourceSpec] = field(default_factory=list)

    def add(self, specs: Iterable[ResourceSpec]) -> None:
        for spec in specs:
            self.specs = [
                s
                for s in self.specs
                if (s.group, s.version, s.plural) != (spec.group, spec.version, spec.plural)
            ]
            self.specs.append(spec)

    def __iter__(self) -> Iterator[ResourceSpec]:
        return iter(self.specs)

    def find(self, group: str, version: str, plural: str) -> ResourceSpec | None:
        for spec in self.specs:
            if (spec.group, spec.version, spec.plural) == (group, version, plural):
                return spec
        return None

    def resolve(self, name: str | ResourceSpec) -> ResourceSpec:
        """
        Resolve a resource by a friendly name; the preferred version wins.

        Accepted: ``pods``, ``po``, ``Pod``, ``jobs.batch``, ``widgets.kubetune.dev``,
        ``kubetune.dev/v1/widgets``, ``v1/pods``, a :class:`ResourceSpec`.
        Bare names prefer the core group (e.g. ``events`` is ``v1/events``).
        """
        if isinstance(name, ResourceSpec):
            return name
        candidates: list[ResourceSpec]
        if "/" in name:
            *gv, plural = name.split("/")
            group, version = ("", gv[0]) if len(gv) == 1 else (gv[0], gv[1])
            candidates = [
                s for s in self.specs if (s.group, s.version, s.plural) == (group, version, plural)
            ]
        else:
            lowered = name.lower()
            candidates = [
                s
                for s in self.specs
                if lowered
                in {s.plural, s.singular, s.kind.lower(), s.group_resource, *s.short_names}
                or lowered == f"{s.kind.lower()}.{s.group}"
            ]
        if not candidates:
            raise KeyError(f"unknown resource: {name!r}")
        candidates.sort(key=lambda s: (s.group != "", not s.preferred))
        return candidates[0]


@functools.cache
def _load_yaml_file(path: str, mtime_ns: int) -> tuple[Any, ...]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: ~10x faster
    text = pathlib.Path(path).read_text(encoding="utf-8")
    return tuple(doc for doc in yaml.load_all(text, Loader=loader) if doc is not None)


def load_crd_files(directory: str | pathlib.Path) -> list[dict[str, Any]]:
    """The CRDs in ``directory/*.yaml`` (parsed once per file version; fresh copies)."""
    crds: list[dict[str, Any]] = []
    for path in sorted(pathlib.Path(directory).glob("*.yaml")):
        for doc in _load_yaml_file(str(path), path.stat().st_mtime_ns):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(copy.deepcopy(doc))
    return crds
