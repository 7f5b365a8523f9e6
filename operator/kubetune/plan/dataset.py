"""Plan a Dataset: one dataprep Job; Ready with version, records, tokens and stage counts.

With ``spec.parallelism`` N above 1 a run has two stages (plan/stages.py): **map**, one
Indexed Job of N pods (pod i runs datatrove task i of N over its share of the input and writes
its shard, then its completion marker, under the run's shard prefix beside the output), then
**reduce**, one pod merging the shards into the versioned artifact. Same output, same version.
"""

from __future__ import annotations

from typing import Any

from kubetune.api.contract import (
    COMPLETION_INDEX_ENV,
    DATAPREP_SHARDS_ENV,
    DATAPREP_STAGE_ENV,
    DATAPREP_TASKS_ENV,
)
from kubetune.api.resources import AnyResource, Dataset
from kubetune.api.steps import DataprepStepSpec, StepResult
from kubetune.plan._results import as_int, lookup
from kubetune.plan.jobs import COMPLETION_INDEX_ANNOTATION as INDEX_ANNOTATION
from kubetune.plan.refs import Wait, resolve_model
from kubetune.plan.stages import Stage
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


# The env of a staged run's pods (read by kubetune_workloads.dataprep.engine).
STAGE_ENV = DATAPREP_STAGE_ENV
TASKS_ENV = DATAPREP_TASKS_ENV
SHARDS_ENV = DATAPREP_SHARDS_ENV


def shards_uri(output_uri: str, run_id: str) -> str:
    """Where a run's map shards go: a hidden, run-scoped sibling of the output on the same
    storage (``pvc://c/ds/g1`` -> ``pvc://c/ds/.g1.shards-g1``), so a pod that may write the
    output may write them, and the output's atomic rename never sees them."""
    scheme, _, rest = output_uri.partition("://")
    parent, _, base = rest.rstrip("/").rpartition("/")
    prefix = f"{scheme}://{parent}/" if parent else f"{scheme}://"
    return f"{prefix}.{base or 'dataset'}.shards-{run_id}"


def dataset_stages(resource: AnyResource, output_uri: str, run_id: str) -> tuple[Stage, ...]:
    """map (N pods) then reduce when spec.parallelism is N > 1; else one Job (no stages)."""
    assert isinstance(resource, Dataset)
    tasks = resource.spec.parallelism or 1
    if tasks <= 1:
        return ()
    common = (
        {"name": TASKS_ENV, "value": str(tasks)},
        {"name": SHARDS_ENV, "value": shards_uri(output_uri, run_id)},
    )
    # Kubernetes sets JOB_COMPLETION_INDEX in Indexed pods; said explicitly, as the node rank
    # of multi-node Jobs is, so the pod's task never depends on that injection.
    index = {
        "name": COMPLETION_INDEX_ENV,
        "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}},
    }
    return (
        Stage("map", tasks, ({"name": STAGE_ENV, "value": "map"}, *common, index)),
        Stage("reduce", 1, ({"name": STAGE_ENV, "value": "reduce"}, *common)),
    )


PLANNER = KindPlanner(
    step="dataprep", build=build_step, result_fields=result_fields, stages=dataset_stages
)


def plan_dataset(resource: Dataset, world: ObservedWorld, config: OperatorConfig) -> Plan:
    """Plan a Dataset."""
    return plan_step(resource, world, config, PLANNER)
