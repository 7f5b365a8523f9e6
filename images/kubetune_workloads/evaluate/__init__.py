"""The evaluate step: score a candidate (and a baseline) on prompt cases, gate, report.

``run(spec)`` gathers the cases, checks every metric can score them, runs the candidate (and
the baseline) over them, aggregates with bootstrap intervals, compares, applies the gates and
bias probes, and writes ``results.json``, ``cases.jsonl`` and ``report.html`` (manifest last).
The step succeeds whenever the evaluation ran; whether the model passed is ``passed``.
"""

from __future__ import annotations

from kubetune.api.steps import EvaluateStepSpec, StepResult

from kubetune_workloads.evaluate.runner import evaluate
from kubetune_workloads.progress import ProgressReporter

__all__ = ["run"]


def run(spec: EvaluateStepSpec) -> StepResult:
    """Evaluate per the step spec; raises WorkloadError on bad input."""
    with ProgressReporter("evaluate", spec.progress_port) as reporter:
        return evaluate(spec, reporter)
