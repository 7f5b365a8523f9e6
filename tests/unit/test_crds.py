"""The generated CRDs: fresh, valid apiextensions/v1, structural, described, CEL rules working."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cel
import celpy
import kubernetes_validate
import pytest
import yaml
from kubetune.schema.crd import (
    check_crds,
    crd_file_name,
    generate_crds,
    iter_rules,
    openapi_schema,
    write_crds,
)
from kubetune.schema.crd_validation import (
    _Walker,
    apply_crd_defaults,
    evaluate_rule,
    validate_against_crd,
)

from tests.helpers.cel_cases import URI_INVALID, URI_RULE_MESSAGE, URI_VALID, case_for

REPO = Path(__file__).resolve().parents[2]
CRDS = generate_crds()
KINDS = [crd["spec"]["names"]["kind"] for crd in CRDS.values()]
# Short names of built-in resources (kubectl api-resources on a recent cluster).
BUILTIN_SHORT_NAMES = {
    "cm", "crd", "crds", "cs", "csr", "cj", "deploy", "ds", "ep", "ev", "hpa", "ing", "limits",
    "netpol", "no", "ns", "pc", "pdb", "po", "psp", "pv", "pvc", "quota", "rc", "rs", "sa", "sc",
    "sts", "svc", "vac", "ingclass", "apiservice",
}  # fmt: skip
STATIC_ESTIMATED_CRD_COST_LIMIT = 100_000_000  # kube-apiserver's budget for all rules of a CRD


def _schema_nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, prop in node.get("properties", {}).items():
        yield from _schema_nodes(prop, f"{path}.{name}")
    if "items" in node:
        yield from _schema_nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from _schema_nodes(node["additionalProperties"], f"{path}{{}}")


def test_crds_on_disk_are_fresh() -> None:
    assert check_crds(REPO / "crds") == []


def test_check_names_missing_and_stale_files(tmp_path: Path) -> None:
    assert all("missing" in p for p in check_crds(tmp_path))
    write_crds(tmp_path)
    assert check_crds(tmp_path) == []
    target = tmp_path / crd_file_name("FinetuneJob")
    target.write_text(target.read_text().replace("LoRA rank.", "Rank."))
    assert check_crds(tmp_path) == [f"{target}: stale (differs from the models)"]


def test_generation_is_deterministic() -> None:
    assert yaml.safe_dump(generate_crds()) == yaml.safe_dump(CRDS)


@pytest.mark.parametrize("name", CRDS)
def test_crd_is_a_valid_apiextensions_v1_object(name: str) -> None:
    kubernetes_validate.validate(CRDS[name], "1.32", strict=True)


@pytest.mark.parametrize("name", CRDS)
def test_crd_names_scope_and_subresources(name: str) -> None:
    crd = CRDS[name]
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{names['plural']}.kubetune.dev" == name[: -len(".yaml")]
    assert crd["spec"]["scope"] == "Namespaced"
    assert names["categories"] == ["kubetune"]
    assert names["shortNames"] and not set(names["shortNames"]) & BUILTIN_SHORT_NAMES
    (version,) = crd["spec"]["versions"]
    assert version["served"] and version["storage"] and version["subresources"] == {"status": {}}


def test_short_names_are_unique_across_kinds() -> None:
    short = [s for crd in CRDS.values() for s in crd["spec"]["names"]["shortNames"]]
    assert len(short) == len(set(short))


@pytest.mark.parametrize("kind", KINDS)
def test_schema_is_structural(kind: str) -> None:
    problems = []
    for path, node in _schema_nodes(openapi_schema(kind)):
        where = path or "<root>"
        for word in ("$ref", "anyOf", "oneOf", "allOf", "not", "$defs", "const", "prefixItems"):
            if word in node:
                problems.append(f"{where}: uses {word}")
        preserve = node.get("x-kubernetes-preserve-unknown-fields")
        if "type" not in node and not (preserve or node.get("x-kubernetes-int-or-string")):
            problems.append(f"{where}: no type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{where}: properties and additionalProperties together")
        if node.get("type") == "array" and "items" not in node:
            problems.append(f"{where}: array without items")
        if isinstance(node.get("exclusiveMinimum"), int | float) and not isinstance(
            node.get("exclusiveMinimum"), bool
        ):
            problems.append(f"{where}: draft-2020 exclusiveMinimum")
    metadata = openapi_schema(kind)["properties"]["metadata"]
    assert set(metadata) == {"type", "description"}, "metadata must not be restricted"
    assert not problems, problems


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_is_described_for_kubectl_explain(kind: str) -> None:
    undescribed = [
        f"{path}.{name}"
        for path, node in _schema_nodes(openapi_schema(kind))
        for name, prop in node.get("properties", {}).items()
        if not str(prop.get("description", "")).strip()
    ]
    assert not undescribed, undescribed


@pytest.mark.parametrize("kind", KINDS)
def test_only_the_affinity_field_preserves_unknown_fields(kind: str) -> None:
    preserved = [
        path
        for path, node in _schema_nodes(openapi_schema(kind))
        if node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert all(p.endswith(".resources.affinity") for p in preserved), preserved


@pytest.mark.parametrize("kind", KINDS)
def test_defaults_are_valid_against_their_own_schema(kind: str) -> None:
    for path, node in _schema_nodes(openapi_schema(kind)):
        if "default" in node:
            errors = validate_against_crd(node["default"], schema=node)
            assert not errors, f"{path}: default {node['default']!r}: {errors}"


@pytest.mark.parametrize("kind", KINDS)
def test_every_list_map_and_string_is_bounded_so_cel_cost_is_bounded(kind: str) -> None:
    unbounded = []
    for path, node in _schema_nodes(openapi_schema(kind)):
        if path in (".apiVersion", ".kind"):
            continue  # set by clients and checked by the API server itself
        kind_ = node.get("type")
        if kind_ == "array" and "maxItems" not in node:
            unbounded.append(path)
        if kind_ == "object" and "additionalProperties" in node and "maxProperties" not in node:
            unbounded.append(path)
        if kind_ == "string" and not {"maxLength", "enum", "format"} & set(node):
            unbounded.append(path)
    assert not unbounded, unbounded


def _cardinalities(node: dict[str, Any], factor: int = 1) -> Iterator[tuple[int, dict[str, Any]]]:
    yield factor, node
    for prop in node.get("properties", {}).values():
        yield from _cardinalities(prop, factor)
    if "items" in node:
        yield from _cardinalities(node["items"], factor * node["maxItems"])
    if isinstance(node.get("additionalProperties"), dict):
        yield from _cardinalities(node["additionalProperties"], factor * node["maxProperties"])


@pytest.mark.parametrize("kind", KINDS)
def test_rough_cel_cost_estimate_fits_the_api_server_budget(kind: str) -> None:
    """Per evaluation: one unit per list element a rule may visit, or per 100 string bytes."""
    total = 0
    for cardinality, node in _cardinalities(openapi_schema(kind)):
        for rule in node.get("x-kubernetes-validations", []):
            visited = max(
                [child.get("maxItems", 1) for child in node.get("properties", {}).values()]
                + [math.ceil(node.get("maxLength", 0) / 100)]
            )
            total += cardinality * (10 + visited) * (len(rule["rule"]) // 10 + 1)
    assert total < STATIC_ESTIMATED_CRD_COST_LIMIT


def _rule_sites() -> list[tuple[str, Any]]:
    return [
        (f"{kind}:{site.path}:{site.rule['message'][:40]}", site)
        for kind in KINDS
        for site in iter_rules(openapi_schema(kind))
    ]


RULE_SITES = _rule_sites()


@pytest.mark.parametrize(("label", "site"), RULE_SITES, ids=[label for label, _ in RULE_SITES])
def test_cel_rule_compiles_in_two_implementations(label: str, site: Any) -> None:
    env = celpy.Environment()
    env.compile(site.rule["rule"])
    cel.compile(site.rule["rule"])


@pytest.mark.parametrize(("label", "site"), RULE_SITES, ids=[label for label, _ in RULE_SITES])
def test_cel_rule_field_path_exists(label: str, site: Any) -> None:
    node = site.schema
    for part in site.rule.get("fieldPath", "").split(".")[1:]:
        assert part in node.get("properties", {}), f"{label}: fieldPath {site.rule['fieldPath']}"
        node = node["properties"][part]


def _defaulted(value: Any, schema: dict[str, Any]) -> Any:
    """A defaulted deep copy: the shared CEL_CASES stay as written for the other tests."""
    value = copy.deepcopy(value)
    _Walker.apply_defaults(value, schema)
    return value


@pytest.mark.parametrize(("label", "site"), RULE_SITES, ids=[label for label, _ in RULE_SITES])
def test_cel_rule_accepts_a_valid_and_rejects_an_invalid_object(label: str, site: Any) -> None:
    rule, schema = site.rule, site.schema
    if rule["message"] == URI_RULE_MESSAGE:
        valid, invalid = URI_VALID, URI_INVALID
    else:
        case = case_for(rule["message"])
        valid, invalid = _defaulted(case.valid, schema), _defaulted(case.invalid, schema)
    assert evaluate_rule(rule["rule"], valid, schema) is True
    assert evaluate_rule(rule["rule"], invalid, schema) is False
    assert cel.evaluate(rule["rule"], {"self": valid}) is True
    assert cel.evaluate(rule["rule"], {"self": invalid}) is False


@pytest.mark.parametrize("kind", KINDS)
def test_printer_columns_point_at_schema_fields(kind: str) -> None:
    schema = openapi_schema(kind)
    (version,) = CRDS[crd_file_name(kind)]["spec"]["versions"]
    columns = version["additionalPrinterColumns"]
    assert columns[0]["name"] == "Phase" and columns[-1]["name"] == "Age"
    for column in columns:
        parts = column["jsonPath"].lstrip(".").split(".")
        node = schema
        for part in parts:
            if node.get("type") == "object" and part in node.get("properties", {}):
                node = node["properties"][part]
            else:
                assert parts[0] == "metadata", f"{column['jsonPath']} not in the {kind} schema"
                break
        if parts[0] != "metadata":
            expected = {"integer": "integer", "number": "number", "boolean": "boolean"}
            assert expected.get(node["type"], "string") == column["type"], column


def test_transition_rules_bind_old_self() -> None:
    schema = {
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {"seed": {"type": "integer"}}}},
        "x-kubernetes-validations": [
            {"rule": "self.spec.seed == oldSelf.spec.seed", "message": "seed is immutable"}
        ],
    }
    obj = {"spec": {"seed": 1}}
    assert validate_against_crd(obj, schema=schema) == []  # create: no oldSelf, rule skipped
    assert validate_against_crd(obj, old={"spec": {"seed": 1}}, schema=schema) == []
    errors = validate_against_crd(obj, old={"spec": {"seed": 2}}, schema=schema)
    assert errors == ['<root>: Invalid value: "object": seed is immutable']


def test_api_server_defaults_match_the_typed_api_defaults() -> None:
    body = {
        "apiVersion": "kubetune.dev/v1alpha1",
        "kind": "FinetuneJob",
        "metadata": {"name": "x"},
        "spec": {
            "model": {"base": {"uri": "hf://o/m"}},
            "dataset": {"name": "d"},
            "lora": {"r": 4},
        },
    }
    spec = apply_crd_defaults(body)["spec"]
    assert spec["method"] == "lora" and spec["objective"] == "instruction"
    assert (
        spec["hyperparameters"]["epochs"] == 1 and spec["hyperparameters"]["learningRate"] == 2e-4
    )
    assert spec["distributed"]["strategy"] == "ddp" and spec["resources"]["gpus"] == 0
    assert spec["lora"]["targetModules"] == ["all-linear"]
    assert "status" not in apply_crd_defaults(body)
