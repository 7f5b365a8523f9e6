"""Per-step metrics and the run's parameters in MLflow (``spec.tracking.mlflow``).

``mlflow`` is imported only here, and only when a run asks for MLflow. Credentials are never
read by kubetune: the operator sets ``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` or
``MLFLOW_TRACKING_TOKEN`` from the Secret and the mlflow client sends them; no parameter, tag,
log line or status field carries them.

One MLflow run per kubetune run: a resumed run (same FinetuneJob run id, after a preemption or
a crash) continues the MLflow run its earlier attempt started, found by the tag
``kubetune.run``. The run ends FINISHED, FAILED, or KILLED (interrupted, it will resume).
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from kubetune.api.finetune import MlflowRun, MlflowTracking
from kubetune.api.steps import FinetuneStepSpec

from kubetune_workloads.finetune.tracking import curve_points

log = logging.getLogger(__name__)
RUN_TAG = "kubetune.run"
MAX_PARAM_LENGTH = 6000
# A server that does not answer should cost seconds, not the client's default minutes of
# retries; a pod's env can still set these variables.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
PARAM_SECTIONS = ("hyperparameters", "lora", "quantization", "preference", "evaluation")


def run_params(step: FinetuneStepSpec, dataset_version: str | None) -> dict[str, str]:
    """What the run was trained from and how: hyperparameters, model, dataset and version."""
    spec = step.spec
    source = spec.model
    if source.base is not None:
        model = source.base.uri
    elif step.model is not None:
        model = step.model.uri
    else:
        model = f"architecture:{source.architecture.family if source.architecture else '?'}"
    params = {
        "objective": spec.objective,
        "method": spec.method,
        "model": model,
        "dataset": step.dataset.uri,
        "dataset.version": dataset_version or step.dataset.version or "unversioned",
    }
    if step.dataset.content_hash:
        params["dataset.contentHash"] = step.dataset.content_hash
    if step.model is not None and step.model.content_hash:
        params["model.contentHash"] = step.model.content_hash
    for section in PARAM_SECTIONS:
        block = getattr(spec, section, None)
        if block is None:
            continue
        dumped = block.model_dump(mode="json", by_alias=True, exclude_none=True)
        for key, value in dumped.items():
            params[f"{section}.{key}"] = str(value)[:MAX_PARAM_LENGTH]
    return params


class MlflowSink:
    """A :class:`~kubetune_workloads.finetune.tracking.MetricSink` logging to one MLflow run."""

    def __init__(self, client: Any, run: MlflowRun) -> None:
        self.client = client
        self.run = run

    @classmethod
    def start(
        cls, cfg: MlflowTracking, step: FinetuneStepSpec, params: dict[str, str]
    ) -> MlflowSink:
        """Create (or continue) the run and log its parameters; raises when MLflow fails."""
        import mlflow
        from mlflow.entities import Param

        for name, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        client = mlflow.MlflowClient(tracking_uri=cfg.tracking_uri)
        experiment = client.get_experiment_by_name(cfg.experiment)
        experiment_id = (
            experiment.experiment_id if experiment else client.create_experiment(cfg.experiment)
        )
        run_id = _continued_run(client, experiment_id, _run_key(step))
        if run_id is None:
            producer = step.producer
            created = client.create_run(
                experiment_id,
                run_name=cfg.run_name or f"{producer.name}-{producer.run_id}",
                tags={
                    RUN_TAG: _run_key(step),
                    "kubetune.resource": f"{producer.kind}/{producer.namespace}/{producer.name}",
                    "kubetune.runId": producer.run_id,
                },
            )
            run_id = created.info.run_id
        client.log_batch(run_id, params=[Param(k, v) for k, v in sorted(params.items())])
        url = f"{cfg.tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
        log.info("MLflow run %s: %s", run_id, url)
        return cls(client, MlflowRun(run_id=run_id, experiment_id=experiment_id, url=url))

    def write(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = int(record["step"])
        metrics = [Metric(k, v, now, step) for k, v in curve_points(record).items()]
        if metrics:
            self.client.log_batch(self.run.run_id, metrics=metrics)

    def mark(self, step: int, event: str) -> None:
        self.client.log_metric(self.run.run_id, f"events/{event}", float(step), step=step)

    def end(self, status: str, tags: dict[str, str] | None = None) -> None:
        """Tag the run and set its final status (FINISHED, FAILED or KILLED)."""
        for key, value in (tags or {}).items():
            self.client.set_tag(self.run.run_id, key, value)
        self.client.set_terminated(self.run.run_id, status=status)


def _run_key(step: FinetuneStepSpec) -> str:
    p = step.producer
    return f"{p.kind}/{p.namespace}/{p.name}/{p.run_id}"


def _continued_run(client: Any, experiment_id: str, key: str) -> str | None:
    """The unfinished MLflow run of an earlier attempt of this kubetune run, reopened."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{RUN_TAG}` = '{key}'",
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    if not found or found[0].info.status == "FINISHED":
        return None
    run_id: str = found[0].info.run_id
    client.update_run(run_id, status="RUNNING")
    log.info("continuing MLflow run %s of an earlier attempt", run_id)
    return run_id
