"""Every manifest under examples/ is valid for `kubetune validate` and for the CRDs, and the
references between example resources resolve to resources the examples define."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubetune.schema.validation import (
    LoadedDocument,
    load_manifests,
    validate_against_crd,
    validate_document,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DOCUMENTS = load_manifests([EXAMPLES]) if EXAMPLES.is_dir() else []
IDS = [f"{Path(d.source).relative_to(EXAMPLES)}:{d.doc.get('kind')}" for d in DOCUMENTS]


def test_examples_exist() -> None:
    kinds = {d.doc.get("kind") for d in DOCUMENTS}
    assert {"Dataset", "FinetuneJob"} <= kinds, f"examples define only {kinds}"


@pytest.mark.parametrize("document", DOCUMENTS, ids=IDS)
def test_example_is_valid_for_the_typed_api(document: LoadedDocument) -> None:
    assert [str(e) for e in validate_document(document.doc)] == []


@pytest.mark.parametrize("document", DOCUMENTS, ids=IDS)
def test_example_is_accepted_by_the_crd(document: LoadedDocument) -> None:
    assert validate_against_crd(document.doc) == []


def _references(node: Any, path: str = "spec") -> Iterator[tuple[str, str, str]]:
    """(path, kind, name) of every {kind, name} and dataset-name reference in a spec."""
    if isinstance(node, dict):
        if node.get("kind") in ("FinetuneJob", "Compression") and isinstance(node.get("name"), str):
            yield path, node["kind"], node["name"]
        dataset_keys = ("dataset", "baseDataset", "perplexityData")
        for key, value in node.items():
            if key in dataset_keys and isinstance(value, dict) and "name" in value:
                yield f"{path}.{key}", "Dataset", value["name"]
            yield from _references(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _references(item, f"{path}[{i}]")


def _group(document: LoadedDocument) -> str:
    """Examples wire together within their top-level directory (or file)."""
    return Path(document.source).relative_to(EXAMPLES).parts[0].split("#")[0]


def test_references_resolve_within_each_example() -> None:
    defined = {
        (_group(d), d.doc.get("metadata", {}).get("namespace", "default"), d.doc["kind"],
         d.doc["metadata"]["name"])
        for d in DOCUMENTS
    }  # fmt: skip
    quickstart = {(k, n) for g, _, k, n in defined if g == "quickstart"}
    dangling = []
    for d in DOCUMENTS:
        group = _group(d)
        namespace = d.doc.get("metadata", {}).get("namespace", "default")
        for path, kind, name in _references(d.doc.get("spec")):
            here = (group, namespace, kind, name) in defined
            # Stand-alone examples may build on the quickstart's resources.
            if not here and (kind, name) not in quickstart:
                dangling.append(f"{d.source}: {path} -> {kind}/{name}")
    assert not dangling, dangling
