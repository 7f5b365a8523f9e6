"""The feedback step's entry point: ``run(spec) -> StepResult``.

The step itself (listing, scanning beyond the cursor, collecting) is in :mod:`.runner` and the
modules it names; this is the one entry the workload command dispatches to
(:mod:`kubetune_workloads.steps`).
"""

from __future__ import annotations

from kubetune.api.steps import FeedbackStepSpec, StepResult

from kubetune_workloads.feedback import runner


def run(spec: FeedbackStepSpec) -> StepResult:
    """Count (or collect) the feedback records beyond the spec's cursor."""
    return runner.run(spec)
