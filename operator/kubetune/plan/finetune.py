"""Plan a FinetuneJob: wait for its Dataset (and a ``from`` model), then one finetune Job."""

from __future__ import annotations

from typing import Any

from kubetune.api.finetune import Tracking
from kubetune.api.publish import MLFLOW_PASSWORD_ENV, MLFLOW_TOKEN_ENV, MLFLOW_USERNAME_ENV
from kubetune.api.resources import FinetuneJob
from kubetune.api.steps import FinetuneStepSpec, InputArtifact, StepResult
from kubetune.plan.jobs import secret_env
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
    step = FinetuneStepSpec(**ctx.base(), spec=spec, dataset=dataset, model=model)
    return Built(step, tracking_env(spec.tracking))


def tracking_env(tracking: Tracking | None) -> tuple[dict[str, Any], ...]:
    """The MLflow server's credentials as ``secretKeyRef`` env (the names mlflow reads)."""
    creds = tracking.mlflow.credentials if tracking and tracking.mlflow else None
    if creds is None:
        return ()
    pairs = (
        (MLFLOW_USERNAME_ENV, creds.username),
        (MLFLOW_PASSWORD_ENV, creds.password),
        (MLFLOW_TOKEN_ENV, creds.token),
    )
    return tuple(secret_env(name, ref) for name, ref in pairs if ref is not None)


def result_fields(result: StepResult) -> dict[str, Any]:
    """The training report, TensorBoard files and MLflow run of a finished run."""
    return {
        "report_uri": result.report_uri,
        "tensorboard_uri": result.tensorboard_uri,
        "mlflow": result.mlflow_run,
    }


PLANNER = KindPlanner(step="finetune", build=build_step, result_fields=result_fields)


def plan_finetune(resource: FinetuneJob, world: ObservedWorld, config: OperatorConfig) -> Plan:
    """Plan a FinetuneJob."""
    return plan_step(resource, world, config, PLANNER)
