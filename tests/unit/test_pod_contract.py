"""The pod contract is declared once (kubetune.api.contract, kubetune.api.steps) and both sides
use it: no module of operator/ or images/ spells a contract value, a workload's failure reaches
the operator as the Job it planned expects, and a Job's finish is decided by one function."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubetune.api import contract
from kubetune.api.common import API_VERSION
from kubetune.api.resources import Dataset
from kubetune.api.steps import EXIT_PERMANENT, EXIT_RETRYABLE, is_permanent, parse_step_result
from kubetune.controllers.cache import job_finished as body_finished
from kubetune.plan import ObservedWorld, OperatorConfig, plan
from kubetune.plan.runs import job_finished
from kubetune.plan.world import ObservedJob
from kubetune_workloads.__main__ import main as workload_main

REPO = Path(__file__).resolve().parents[2]
CONTRACT_FILE = REPO / "operator/kubetune/api/contract.py"
VALUES = {
    value: name
    for name, value in vars(contract).items()
    if name.isupper() and isinstance(value, str)
}
# The shape of a kubetune label or annotation key: any such literal belongs in the contract.
KEY_SHAPE = re.compile(r"^kubetune\.dev/[a-z][a-z0-9.-]*$")


def spelled_contract_values(paths: Iterable[Path]) -> list[str]:
    """``file:line: value (NAME)`` for each string literal that is a contract value or is shaped
    like a kubetune label/annotation key (the API version aside)."""
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                value = node.value
                if value in VALUES or (KEY_SHAPE.match(value) and value != API_VERSION):
                    name = VALUES.get(value, "key-shaped")
                    where = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
                    found.append(f"{where}:{node.lineno}: {value!r} ({name})")
    return found


def test_the_contract_gives_each_value_one_name() -> None:
    names = [n for n, v in vars(contract).items() if n.isupper() and isinstance(v, str)]
    assert len(names) > 20
    assert len(VALUES) == len(names), "two names of the contract share one value"


@pytest.mark.parametrize("side", ["operator", "images"])
def test_no_module_but_the_contract_spells_a_contract_value(side: str) -> None:
    modules = [p for p in sorted((REPO / side).rglob("*.py")) if p != CONTRACT_FILE]
    assert len(modules) > 30
    assert spelled_contract_values(modules) == []


def test_the_scan_finds_contract_values_and_new_keys(tmp_path: Path) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        'LABEL = "kubetune.dev/run-id"\n'
        'OTHER = "kubetune.dev/new-thing"\n'
        'KEY = {"pendingRecords": 1}\n'
        '"""Docs may say kubetune.dev/run-id=g1."""\n'
        f'FINE = ("run-id", "{API_VERSION}")\n'
    )
    assert spelled_contract_values([module]) == [
        "bad.py:1: 'kubetune.dev/run-id' (LABEL_RUN_ID)",
        "bad.py:2: 'kubetune.dev/new-thing' (key-shaped)",
        "bad.py:3: 'pendingRecords' (RESULT_PENDING_RECORDS)",
    ]


def _planned_job() -> dict[str, Any]:
    dataset = Dataset.model_validate(
        {
            "metadata": {"name": "support", "namespace": "ml", "uid": "d-uid", "generation": 1},
            "spec": {"sources": [{"uri": "pvc://raw/support.jsonl"}]},
        }
    )
    world = ObservedWorld(now=datetime(2025, 1, 1, tzinfo=UTC))
    children = plan(dataset, world, OperatorConfig()).children
    return next(c for c in children if c["kind"] == "Job")


@pytest.mark.parametrize(
    ("spec_text", "reason"), [(None, "SpecUnreadable"), ("{not json", "InvalidSpec")]
)
def test_a_failed_workload_reaches_the_operator_as_the_planned_job_expects(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    spec_text: str | None,
    reason: str,
) -> None:
    job = _planned_job()
    container = job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env[contract.TERMINATION_LOG_ENV] == container["terminationMessagePath"]
    argv = container.get("command", []) + container.get("args", [])
    assert argv[argv.index("--spec") + 1] == contract.SPEC_PATH
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert contract.SPEC_DIR in mounts
    step = argv[argv.index("kubetune_workloads") + 1]
    spec = tmp_path / contract.SPEC_KEY
    if spec_text is not None:
        spec.write_text(spec_text)
    termination = tmp_path / "termination-log"  # the pod's terminationMessagePath, here
    monkeypatch.setenv(contract.TERMINATION_LOG_ENV, str(termination))

    code = workload_main([step, "--spec", str(spec)])

    result = parse_step_result(termination.read_text())
    assert result is not None and not result.ok and result.reason == reason
    assert is_permanent(reason) and code == EXIT_PERMANENT != EXIT_RETRYABLE
    fail_job = [r for r in job["spec"]["podFailurePolicy"]["rules"] if r["action"] == "FailJob"]
    assert [code] == fail_job[0]["onExitCodes"]["values"]
    printed = [
        line.removeprefix(f"{contract.RESULT_LINE_PREFIX} ")
        for line in capsys.readouterr().out.splitlines()
        if line.startswith(f"{contract.RESULT_LINE_PREFIX} ")
    ]
    assert [json.loads(p)["reason"] for p in printed] == [reason]


JOB_CONDITION_CASES = [
    ([], False),
    ([("Suspended", "True")], False),
    ([("Complete", "False")], False),
    ([("Complete", "True")], True),
    ([("SuccessCriteriaMet", "True")], True),  # 1.31+: set while the pods still terminate
    ([("Failed", "True")], True),
    ([("FailureTarget", "True")], True),  # 1.31+: the Job will fail
    ([("FailureTarget", "False"), ("Suspended", "True")], False),
    ([("SuccessCriteriaMet", "True"), ("Complete", "True")], True),
]


@pytest.mark.parametrize(("conditions", "finished"), JOB_CONDITION_CASES)
def test_the_planners_and_the_controllers_agree_when_a_job_is_finished(
    conditions: list[tuple[str, str]], finished: bool
) -> None:
    dicts = tuple({"type": t, "status": s} for t, s in conditions)
    observed = ObservedJob(name="support-dataprep-g1", run_id="g1", conditions=dicts)
    body = {"kind": "Job", "metadata": {"name": "j"}, "status": {"conditions": list(dicts)}}
    assert job_finished(observed) is finished
    assert body_finished(body) is finished
    assert body_finished({"kind": "Job", "metadata": {"name": "j"}}) is False


def test_the_workloads_score_exactly_the_metrics_of_the_api() -> None:
    from kubetune.api.evaluation import METRIC_NAMES
    from kubetune_workloads.evaluate.textmetrics import DIRECTION, QUALITY_METRICS, QUALITY_NAMES

    assert set(DIRECTION) == set(METRIC_NAMES), "a metric of the API has no direction"
    assert set(METRIC_NAMES) > QUALITY_NAMES, "a quality metric the API does not know"
    assert set(QUALITY_METRICS) == QUALITY_NAMES
