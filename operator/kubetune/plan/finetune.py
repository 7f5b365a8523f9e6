"""Plan a FinetuneJob: wait for its Dataset (and a ``from`` model), then one finetune Job."""

from __future__ import annotations

from kubetune.api.resources import FinetuneJob
from kubetune.api.steps import FinetuneStepSpec, InputArtifact
from kubetune.plan.refs import Wait, combine_waits, resolve_dataset, resolve_model
from kubetune.plan.step import Built, KindPlanner, RunContext, plan_step
from kubetune.plan.world import ObservedWorld, OperatorConfig, Plan


def build_step(ctx: RunContext) -> Built | Wait:
    """The finetune step spec with the dataset and model resolved to artifact URIs."""
    assert isinstance(ctx.resource, FinetuneJob)
    spec = ctx.resource.spec
    dataset = resolve_dataset(spec.dataset, ctx.world, "dataset")
    model: InputArtifact | Wait | None = None
    if spec.model.base is not None:
        model = InputArtifact(uri=spec.model.base.uri)
    elif spec.model.from_ is not None:
        model = resolve_model(spec.model.from_, ctx.world, "model")
    waits = [r for r in (dataset, model) if isinstance(r, Wait)]
    wait = combine_waits(waits)
    if wait is not None:
        return wait
    assert isinstance(dataset, InputArtifact) and not isinstance(model, Wait)
    return Built(FinetuneStepSpec(**ctx.base(), spec=spec, dataset=dataset, model=model))


PLANNER = KindPlanner(step="finetune", build=build_step)


def plan_finetune(resource: FinetuneJob, world: ObservedWorld, config: OperatorConfig) -> Plan:
    """Plan a FinetuneJob."""
    return plan_step(resource, world, config, PLANNER)
