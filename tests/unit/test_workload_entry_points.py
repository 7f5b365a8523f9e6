"""Workload entry points of one shape: every step is ``kubetune_workloads/<step>/main.py`` with
``run(spec) -> StepResult`` (the pod contract's result), and ``python -m kubetune_workloads``
dispatches to exactly that function through the step registry."""

from __future__ import annotations

import importlib
import inspect
import json
import typing
from pathlib import Path

import pytest
from kubetune.api.steps import PublishStepSpec, StepName, StepResult, StepSpec
from kubetune_workloads import steps
from kubetune_workloads.__main__ import main, run_step

WORKLOADS = Path(__file__).resolve().parents[2] / "images" / "kubetune_workloads"
PUBLISH_SPEC = {
    "step": "publish",
    "producer": {"kind": "FinetuneJob", "name": "m", "namespace": "ns", "runId": "r1"},
    "outputUri": "file:///nowhere/m",
    "publish": {},
    "artifact": {"uri": "file:///nowhere/m"},
    "version": "m-r1",
    "lineage": {"resource": "FinetuneJob/ns/m", "runId": "r1"},
}
SPEC_MODELS = {  # step name -> its step-spec model, from the contract's union
    typing.get_args(model.model_fields["step"].annotation)[0]: model
    for model in typing.get_args(typing.get_args(StepSpec)[0])
}


@pytest.mark.parametrize("step", typing.get_args(StepName))
def test_each_step_has_one_main_run_of_the_contract_shape(step: StepName) -> None:
    assert steps.STEP_MODULES[step] == f"kubetune_workloads.{step}.main"
    assert (WORKLOADS / step / "main.py").is_file()
    module = importlib.import_module(steps.STEP_MODULES[step])
    hints = typing.get_type_hints(module.run)
    (param,) = inspect.signature(module.run).parameters
    assert hints["return"] is StepResult
    assert hints[param] is SPEC_MODELS[step], f"{step}: run takes {hints[param]}"
    assert steps.entry_point(step) is module.run


def test_the_registry_lists_every_step_package_and_nothing_else() -> None:
    packages = {p.parent.name for p in WORKLOADS.glob("*/main.py")}
    assert packages == set(steps.STEP_MODULES) == set(typing.get_args(StepName))


def test_dispatch_goes_through_the_registry_to_main_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The command runs the registered ``main.run`` and reports its result and exit code."""
    module = importlib.import_module(steps.STEP_MODULES["publish"])
    seen: list[object] = []

    def fake_run(spec: object) -> StepResult:
        seen.append(spec)
        return StepResult(step="publish", ok=False, reason="InvalidInput", message="from main")

    monkeypatch.setattr(module, "run", fake_run)
    monkeypatch.setenv("KUBETUNE_TERMINATION_LOG", str(tmp_path / "termination-log"))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(PUBLISH_SPEC))
    assert main(["publish", "--spec", str(spec)]) == 2  # InvalidInput is permanent
    assert len(seen) == 1 and isinstance(seen[0], PublishStepSpec)
    assert seen[0].version == "m-r1"
    written = json.loads((tmp_path / "termination-log").read_text())
    assert (written["step"], written["reason"]) == ("publish", "InvalidInput")
    assert written["message"] == "from main"
    assert '"message":"from main"' in capsys.readouterr().out


def test_a_spec_for_another_step_is_refused_before_any_step_runs(tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(PUBLISH_SPEC))
    result = run_step("finetune", spec)
    assert (result.ok, result.reason) == (False, "InvalidSpec")
    assert "not 'finetune'" in result.message
    assert steps.exit_code(result) == 2


def test_exit_codes_follow_the_result() -> None:
    assert steps.exit_code(StepResult(step="evaluate", ok=True, reason="GatesFailed")) == 0
    assert steps.exit_code(StepResult(step="evaluate", ok=False, reason="InvalidInput")) == 2
    assert steps.exit_code(StepResult(step="evaluate", ok=False, reason="OutOfMemory")) == 1
