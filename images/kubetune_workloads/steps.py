"""The registry of workload steps: one entry point of one shape per step.

Every step is a package with a ``main`` module whose ``run(spec) -> StepResult`` is its only
entry point: ``spec`` is the step's own model of :data:`kubetune.api.steps.StepSpec` (e.g.
``FinetuneStepSpec``), and :class:`~kubetune.api.steps.StepResult` is the pod contract's
summary (ok, reason, message, output URI, metrics, details), declared once in
``kubetune.api.steps`` and read back by the operator from the termination message. The
result's reason decides the exit code (:func:`exit_code`). Adding a step: a package with a
``main.run`` and one line in :data:`STEP_MODULES`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, cast

from kubetune.api.steps import StepName, StepResult, exit_code_for

__all__ = ["STEP_MODULES", "StepEntry", "StepResult", "entry_point", "exit_code"]

StepEntry = Callable[[Any], StepResult]
"""``run(spec) -> StepResult``, where ``spec`` is the step's own step-spec model."""

STEP_MODULES: dict[StepName, str] = {
    "dataprep": "kubetune_workloads.dataprep.main",
    "finetune": "kubetune_workloads.finetune.main",
    "compress": "kubetune_workloads.compress.main",
    "evaluate": "kubetune_workloads.evaluate.main",
    "feedback": "kubetune_workloads.feedback.main",
    "publish": "kubetune_workloads.publish.main",
}


def entry_point(step: StepName) -> StepEntry:
    """Import the step's ``main`` module (torch and friends load only now) and return its
    ``run``."""
    module = importlib.import_module(STEP_MODULES[step])
    return cast(StepEntry, module.run)


def exit_code(result: StepResult) -> int:
    """0 on success; else 2 for a permanent reason (the Job's ``podFailurePolicy`` fails the
    Job at once) or 1 for a retryable one (kubetune.api.steps.FAILURE_REASONS)."""
    return 0 if result.ok else exit_code_for(result.reason)
