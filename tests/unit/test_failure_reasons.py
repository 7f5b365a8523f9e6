"""One table of failure reasons (kubetune.api.steps.FAILURE_REASONS): every reason a workload
can fail with is in it, decided permanent or retryable; the exit code, the Job's
podFailurePolicy and docs/operator.md follow it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from kubetune.api.steps import (
    EXIT_PERMANENT,
    FAILURE_REASONS,
    PERMANENT_REASONS,
    StepResult,
    exit_code_for,
)

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ROOT / "images" / "kubetune_workloads"
SUCCESS = {"Completed", "Passed", "GatesFailed", "Counted", "Collected"}  # ok=True results


def _constants(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _constants(node.body) | _constants(node.orelse)
    return set()


def _raised_reasons() -> dict[str, str]:
    """Reason -> file:line of every failure reason a workload can report."""
    found: dict[str, str] = {}
    for path in sorted(WORKLOADS.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            reasons: set[str] = set()
            if isinstance(node, ast.Call):
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name == "WorkloadError" and node.args:
                    reasons |= _constants(node.args[0])
                for keyword in node.keywords:
                    if keyword.arg == "reason":
                        reasons |= _constants(keyword.value)
            elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Tuple):
                for target in node.targets:
                    if isinstance(target, ast.Tuple):
                        for name_node, value in zip(target.elts, node.value.elts, strict=False):
                            if getattr(name_node, "id", "") == "reason":
                                reasons |= _constants(value)
            elif (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Dict)
                and any("REASON" in getattr(t, "id", "") for t in node.targets)
            ):
                for value in node.value.values:
                    reasons |= _constants(value)
            for reason in reasons - SUCCESS:
                found.setdefault(reason, f"{path.relative_to(ROOT)}:{node.lineno}")  # type: ignore[attr-defined]
    return found


RAISED = _raised_reasons()


def test_the_scan_finds_the_reasons_the_issue_listed() -> None:
    for reason in (
        "EmptyDataset",
        "TooManyMalformedRecords",
        "PromptTooLong",
        "CursorUnreadable",
        "JudgeUnauthorized",
        "QuantizationFailed",
        "StorageError",
        "InternalError",
    ):
        assert reason in RAISED


@pytest.mark.parametrize("reason", sorted(RAISED))
def test_every_reason_a_workload_raises_is_decided_in_the_table(reason: str) -> None:
    assert reason in FAILURE_REASONS, f"{reason} ({RAISED[reason]}) is not in FAILURE_REASONS"


@pytest.mark.parametrize("reason", sorted(FAILURE_REASONS))
def test_the_workload_exit_code_follows_the_table(reason: str, tmp_path: Path) -> None:
    from kubetune_workloads.__main__ import main

    kind, _ = FAILURE_REASONS[reason]
    assert exit_code_for(reason) == (EXIT_PERMANENT if kind == "permanent" else 1)
    assert re.fullmatch(r"[A-Z][A-Za-z]+", reason)
    assert StepResult(step="finetune", ok=False, reason=reason).reason == reason
    if reason in ("SpecUnreadable",):  # end to end through the entry point
        code = main(["finetune", "--spec", str(tmp_path / "missing.json")])
        assert code == exit_code_for(reason)


def test_the_job_fails_at_once_on_the_permanent_exit_code() -> None:
    from kubetune.plan import jobs

    assert jobs.EXIT_INVALID_INPUT == EXIT_PERMANENT
    assert exit_code_for("SomethingNew") != EXIT_PERMANENT  # unknown: retryable


def test_docs_list_the_table() -> None:
    text = (ROOT / "docs" / "operator.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([A-Za-z]+)` \| (permanent|retryable) \|", text, re.MULTILINE))
    assert rows == {r: kind for r, (kind, _) in FAILURE_REASONS.items()}
    assert set(PERMANENT_REASONS) <= set(rows)
