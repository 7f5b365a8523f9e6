"""The dataprep step's entry point: ``run(spec) -> StepResult``.

The step itself (stages, passes, artifact) is in :mod:`.step` and the modules it names; this is
the one entry the workload command dispatches to (:mod:`kubetune_workloads.steps`).
"""

from __future__ import annotations

from kubetune.api.steps import DataprepStepSpec, StepResult

from kubetune_workloads.dataprep import step


def run(spec: DataprepStepSpec) -> StepResult:
    """Curate ``spec``'s sources into a versioned dataset artifact and summarize it."""
    return step.run(spec)
