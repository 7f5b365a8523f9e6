"""The generic layers name no kind: a decision that depends on the kind goes through the layer's
per-kind table (built with ``kubetune.api.kinds.per_kind``), so a new kind changes one table,
not the shared machinery.

Generic modules are those of ``kubetune.local`` and ``kubetune.controllers`` not named for a kind
(``feedback_checks.py``, ``dataset.py``, ...), and ``kubetune.plan``'s ``__init__`` and ``step``.
In their code (docstrings and comments are prose, and skipped) a kind name may appear only as a
key of a ``per_kind`` table, and only a module holding such a table (the layer's registration)
may import a kind's module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from kubetune.api.kinds import KINDS

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "kubetune"
NAMES = {kind.lower() for kind in KINDS}
# Lower-case kind-name prefixes that name a kind's module: "feedback" (FeedbackLoop),
# "finetune" (FinetuneJob), "dataset", "compression", "evaluation".
KIND_MODULE_STEMS = ("feedback", "finetune", "dataset", "compression", "evaluation")
# Words that are a kind's name but mean something else here.
NOT_A_KIND = {
    # ArtifactManifest.artifact: the type of an artifact (its inputs are raw sources).
    ("local/lineage.py", "dataset"),
}


def is_kind_module(stem: str) -> bool:
    return stem.split("_")[0] in KIND_MODULE_STEMS and any(
        kind.startswith(stem.split("_")[0]) for kind in NAMES
    )


def generic_modules() -> list[Path]:
    found = [PACKAGE / "plan" / "__init__.py", PACKAGE / "plan" / "step.py"]
    for layer in ("local", "controllers"):
        found += [p for p in sorted((PACKAGE / layer).glob("*.py")) if not is_kind_module(p.stem)]
    return found


def _docstrings(tree: ast.Module) -> set[int]:
    nodes = [tree, *ast.walk(tree)]
    owners = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    return {
        id(node.body[0].value)
        for node in nodes
        if isinstance(node, owners)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
        and isinstance(node.body[0].value.value, str)
    }


def _in_tables(tree: ast.Module) -> set[int]:
    """Every node inside the arguments of a ``per_kind(...)`` call (a layer's kind table)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "per_kind":
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                inside.update(id(n) for n in ast.walk(arg))
    return inside


def _kind_module_import(node: ast.AST) -> str | None:
    modules: list[str] = []
    if isinstance(node, ast.ImportFrom) and node.module:
        modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
    elif isinstance(node, ast.Import):
        modules = [a.name for a in node.names]
    for module in modules:
        parts = module.split(".")
        if parts[0] == "kubetune" and len(parts) > 2 and is_kind_module(parts[2]):
            return f"imports {module}"
    return None


def kind_names_in(source: str, where: str = "") -> list[str]:
    """'line: what' for every kind name in the code of ``source`` outside a per_kind table,
    and every import of a kind's module outside a registration module."""
    tree = ast.parse(source)
    tables = _in_tables(tree)
    skipped = _docstrings(tree) | tables
    registration = bool(tables)  # the layer's registration imports the kinds' modules
    found = []
    for node in ast.walk(tree):
        word = None
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            word = node.value
        elif isinstance(node, ast.Attribute):
            word = node.attr
        elif isinstance(node, ast.Name):
            word = node.id
        if word is not None and word.lower() in NAMES and (where, word.lower()) not in NOT_A_KIND:
            found.append(f"{node.lineno}: {word!r}")
        if not registration and (imported := _kind_module_import(node)):
            found.append(f"{node.lineno}: {imported}")
    return sorted(found, key=lambda line: int(line.split(":")[0]))


@pytest.mark.parametrize("path", generic_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_a_generic_module_names_no_kind(path: Path) -> None:
    where = str(path.relative_to(PACKAGE))
    found = kind_names_in(path.read_text(), where)
    assert not found, f"{where} names a kind outside a per_kind table: {found}"


def test_the_check_finds_a_kind_decision_and_skips_prose_and_tables() -> None:
    decision = '''
"""A FeedbackLoop is mentioned in prose."""
from kubetune.local.feedback_checks import LOOP_KIND

def done(body):
    """Ready, or a FeedbackLoop that waits."""
    if body["kind"] == "FeedbackLoop":  # a FeedbackLoop waits
        return body["status"].get("awaitingApproval")
    return body.spec.dataset
'''
    assert kind_names_in(decision) == [
        "3: imports kubetune.local.feedback_checks",
        "7: 'FeedbackLoop'",
        "9: 'dataset'",
    ]
    table = (
        "from kubetune.plan.dataset import plan_dataset\n"
        'TABLE = per_kind("layer", {"Dataset": plan_dataset})\n'
    )
    assert kind_names_in(table) == []
    assert kind_names_in(table + 'OTHER = {"Dataset": 1}\n') == ["3: 'Dataset'"]


def test_every_layer_and_kind_module_is_classified() -> None:
    modules = {p.stem for p in generic_modules()}
    assert {"runner", "view", "reconcile", "registry", "metrics", "step"} <= modules
    assert not modules & {"feedback_checks", "feedback_view", "dataset", "finetune", "feedback"}
