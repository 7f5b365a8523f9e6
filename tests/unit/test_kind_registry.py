"""The kind registry (kubetune.api.kinds) and every layer's per-kind table agree: a kind left
out of any layer (planner, dependency fields, controller, CRD, chart RBAC, workload step) fails
here, and a layer's table that misses a kind refuses to import."""

from __future__ import annotations

import typing
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubetune.api.common import ArtifactRef, DatasetNameRef, DatasetRef
from kubetune.api.kinds import KIND_INFO, KINDS, KindRegistryError, per_kind
from kubetune.api.resources import AnyResource
from kubetune.api.steps import STEP_OF_KIND, StepName
from kubetune.controllers.registry import BY_KIND, CONTROLLERS
from kubetune.local.kinds import LOCAL_KINDS
from kubetune.plan import PLANNERS
from kubetune.plan.refs import CHILD_TEMPLATE_FIELDS, DEPENDENCY_FIELDS
from kubetune.schema.crd import crd_file_name, generate_crds
from kubetune_workloads.__main__ import STEP_MODULES
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[2]
REFERENCE_TYPES = (ArtifactRef, DatasetRef, DatasetNameRef)


def test_the_api_registers_each_kind_once_with_its_own_models() -> None:
    assert tuple(KIND_INFO) == KINDS
    assert len(set(KINDS)) == len(KINDS)
    assert typing.get_args(AnyResource) == tuple(info.model for info in KIND_INFO.values())
    for kind, info in KIND_INFO.items():
        assert info.kind == kind
        assert info.model.model_fields["kind"].default == kind
        assert info.model.model_fields["spec"].annotation is info.spec_model
        assert info.model.model_fields["status"].annotation == info.status_model | None


@pytest.mark.parametrize(
    ("layer", "table"),
    [
        ("kubetune.plan.PLANNERS", PLANNERS),
        ("kubetune.plan.refs.DEPENDENCY_FIELDS", DEPENDENCY_FIELDS),
        ("kubetune.controllers.registry.BY_KIND", BY_KIND),
        ("kubetune.local.kinds.LOCAL_KINDS", LOCAL_KINDS),
        ("kubetune.controllers.registry.CONTROLLERS", {c.kind: c for c in CONTROLLERS}),
        (
            "kubetune.schema.crd.generate_crds",
            {k: k for k in KINDS if crd_file_name(k) in generate_crds()},
        ),
    ],
)
def test_every_layer_has_exactly_the_registered_kinds(layer: str, table: dict[str, Any]) -> None:
    assert tuple(table) == KINDS, f"{layer} does not list every kind of kubetune.api.kinds"


def test_the_controllers_are_registered_under_their_own_kind() -> None:
    assert all(controller.kind == kind for kind, controller in BY_KIND.items())
    assert len(CONTROLLERS) == len(KINDS)


def test_a_layer_table_missing_a_kind_or_naming_an_unknown_one_is_refused() -> None:
    partial = {kind: kind for kind in KINDS if kind != "FeedbackLoop"}
    with pytest.raises(KindRegistryError, match=r"test-layer.*missing \['FeedbackLoop'\]"):
        per_kind("test-layer", partial)
    with pytest.raises(KindRegistryError, match=r"unknown \['Pipeline'\]"):
        per_kind("test-layer", {**{kind: kind for kind in KINDS}, "Pipeline": "x"})
    reordered = dict(reversed([(kind, kind) for kind in KINDS]))
    assert tuple(per_kind("test-layer", reordered)) == KINDS


def test_every_kind_has_a_committed_crd_file_and_chart_rbac() -> None:
    for kind in KINDS:
        assert (REPO / "crds" / crd_file_name(kind)).is_file(), kind
    helpers = (REPO / "charts/kubetune/templates/_helpers.tpl").read_text()
    block = helpers.split('{{- define "kubetune.namespacedRules" -}}', 1)[1].split("{{- end }}")[0]
    rules = [r for r in yaml.safe_load(block) if r["apiGroups"] == ["kubetune.dev"]]
    watched = next(r["resources"] for r in rules if "watch" in r["verbs"])
    status = next(r["resources"] for r in rules if r["verbs"] == ["patch"])
    for info in KIND_INFO.values():
        assert info.plural in watched, f"the chart's RBAC cannot watch {info.plural}"
        assert f"{info.plural}/status" in status, f"the chart's RBAC cannot patch {info.plural}"


def test_every_step_of_the_contract_has_a_workload_module() -> None:
    assert set(STEP_MODULES) == set(typing.get_args(StepName))


def test_every_step_a_kind_runs_has_a_workload_module() -> None:
    assert set(STEP_OF_KIND) <= set(KINDS)
    for kind, step in STEP_OF_KIND.items():
        assert step in STEP_MODULES, f"{kind} runs step {step!r}, which no workload implements"
        assert find_spec(STEP_MODULES[step]) is not None, STEP_MODULES[step]


def _models(annotation: Any) -> Iterator[type[BaseModel]]:
    args = typing.get_args(annotation)
    if args:
        for arg in args:
            yield from _models(arg)
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation


def reference_fields(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """Attribute paths of every DatasetRef/DatasetNameRef/ArtifactRef field under ``model``."""
    for name, field in model.model_fields.items():
        for nested in _models(field.annotation):
            if nested in REFERENCE_TYPES:
                yield prefix + name
            else:
                yield from reference_fields(nested, f"{prefix}{name}.")


@pytest.mark.parametrize("kind", KINDS)
def test_every_reference_field_of_a_spec_is_a_dependency_or_a_child_template(kind: str) -> None:
    """A new reference field left out of DEPENDENCY_FIELDS would never wake its referrer."""
    found = set(reference_fields(KIND_INFO[kind].spec_model))
    templates = CHILD_TEMPLATE_FIELDS.get(kind, ())
    declared = set(DEPENDENCY_FIELDS[kind])
    unlisted = {
        path
        for path in found - declared
        if not any(path == t or path.startswith(f"{t}.") for t in templates)
    }
    assert not unlisted, f"{kind}: reference fields neither dependencies nor templates: {unlisted}"
    assert declared <= found, (
        f"{kind}: DEPENDENCY_FIELDS names no reference field: {declared - found}"
    )
