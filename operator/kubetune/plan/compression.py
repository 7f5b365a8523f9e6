"""Plan a Compression: wait for its source model (and dataset), then one compress Job."""

from __future__ import annotations

from typing import Any

from kubetune.api.resources import Compression
from kubetune.api.steps import CompressStepSpec, InputArtifact, StepResult
from kubetune.plan._results import as_float, lookup
from kubetune.plan.refs import Wait, combine_waits, resolve_dataset, resolve_model
from kubetune.plan.step import Built, KindPlanner, RunContext, plan_step
from kubetune.plan.world import ObservedWorld, OperatorConfig, Plan


def build_step(ctx: RunContext) -> Built | Wait:
    """The compress step spec with the model (and dataset) resolved."""
    assert isinstance(ctx.resource, Compression)
    spec = ctx.resource.spec
    model = resolve_model(spec.model, ctx.world, "model")
    dataset = (
        resolve_dataset(spec.dataset, ctx.world, "dataset") if spec.dataset is not None else None
    )
    wait = combine_waits([r for r in (model, dataset) if isinstance(r, Wait)])
    if wait is not None:
        return wait
    assert isinstance(model, InputArtifact) and not isinstance(dataset, Wait)
    return Built(CompressStepSpec(**ctx.base(), spec=spec, model=model, dataset=dataset))


def result_fields(result: StepResult) -> dict[str, Any]:
    """sizeRatio and perplexityDelta from the compress result."""
    return {
        "size_ratio": as_float(lookup(result, "sizeRatio", "size_ratio")),
        "perplexity_delta": as_float(lookup(result, "perplexityDelta", "perplexity_delta")),
    }


PLANNER = KindPlanner(step="compress", build=build_step, result_fields=result_fields)


def plan_compression(resource: Compression, world: ObservedWorld, config: OperatorConfig) -> Plan:
    """Plan a Compression."""
    return plan_step(resource, world, config, PLANNER)
