"""Plan a Dataset: one dataprep Job; Ready with version, records, tokens and stage counts."""

from __future__ import annotations

from typing import Any

from kubetune.api.resources import Dataset
from kubetune.api.steps import DataprepStepSpec, StepResult
from kubetune.plan._results import as_int, lookup
from kubetune.plan.refs import Wait, resolve_model
from kubetune.plan.step import Built, KindPlanner, RunContext, plan_step
from kubetune.plan.world import ObservedWorld, OperatorConfig, Plan


def build_step(ctx: RunContext) -> Built | Wait:
    """The dataprep step spec; waits for a tokenizer model given by reference."""
    assert isinstance(ctx.resource, Dataset)
    spec = ctx.resource.spec
    tokenizer_uri = None
    if spec.tokenizer is not None and spec.tokenizer.model is not None:
        model = resolve_model(spec.tokenizer.model, ctx.world, "tokenizer model")
        if isinstance(model, Wait):
            return model
        tokenizer_uri = model.uri
    return Built(DataprepStepSpec(**ctx.base(), spec=spec, tokenizer_uri=tokenizer_uri))


def result_fields(result: StepResult) -> dict[str, Any]:
    """version, records, tokens and stageCounts from the dataprep result."""
    counts = lookup(result, "stageCounts", "stage_counts")
    stage_counts = (
        {str(k): n for k, v in counts.items() if (n := as_int(v)) is not None}
        if isinstance(counts, dict)
        else None
    )
    version = lookup(result, "version")
    return {
        "version": str(version) if version is not None else result.content_hash,
        "records": as_int(lookup(result, "records")),
        "tokens": as_int(lookup(result, "tokens")),
        "stage_counts": stage_counts,
    }


PLANNER = KindPlanner(step="dataprep", build=build_step, result_fields=result_fields)


def plan_dataset(resource: Dataset, world: ObservedWorld, config: OperatorConfig) -> Plan:
    """Plan a Dataset."""
    return plan_step(resource, world, config, PLANNER)
