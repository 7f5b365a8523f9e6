"""Training you can see: the sinks a run's curves go to, and what the run reports of them.

Rank 0 of every FinetuneJob run writes TensorBoard event files (:mod:`.tensorboard_sink`);
with ``spec.tracking.mlflow`` it also logs to MLflow (:mod:`.mlflow_sink`); and it writes the
HTML training report into the artifact (:mod:`.training_report`). Other ranks track nothing.

An MLflow server that cannot be reached does not stop training (a warning, and the run goes
on with TensorBoard and the report) unless ``tracking.mlflow.required`` is set: then the run
fails with the retryable reason ``TrackingUnavailable`` before it trains.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubetune.api.finetune import MlflowRun
from kubetune.api.steps import FinetuneStepSpec

from kubetune_workloads.errors import WorkloadError
from kubetune_workloads.finetune.mlflow_sink import MlflowSink, run_params
from kubetune_workloads.finetune.tensorboard_sink import TensorBoardSink, tensorboard_uri
from kubetune_workloads.finetune.tracking import MetricSink

log = logging.getLogger(__name__)
MAX_ERROR_TEXT = 300


@dataclass
class Watchers:
    """The run's sinks; :meth:`finish` on success, :meth:`close` always (idempotent)."""

    main: bool = False  # rank 0: the only rank that tracks and writes the report
    tensorboard: TensorBoardSink | None = None
    mlflow: MlflowSink | None = None
    stop: Any = None  # the run's GracefulStop: an interrupted run's MLflow run ends KILLED
    finished: bool = field(default=False)

    @property
    def sinks(self) -> list[MetricSink]:
        return [s for s in (self.tensorboard, self.mlflow) if s is not None]

    def write_report(self, out: Path, step: FinetuneStepSpec, results: dict[str, Any]) -> None:
        """``training-report.html`` in the artifact, from its ``metrics.jsonl``."""
        from kubetune_workloads.finetune import training_report

        if self.main:
            training_report.write(out, step, results)

    def result_fields(self, step: FinetuneStepSpec) -> dict[str, Any]:
        """``StepResult`` fields: the report, the event files and the MLflow run."""
        from kubetune_workloads.finetune.training_report import REPORT_FILE

        if not self.main or self.tensorboard is None:
            return {}
        mlflow_run: MlflowRun | None = self.mlflow.run if self.mlflow is not None else None
        return {
            "report_uri": f"{step.output_uri.rstrip('/')}/{REPORT_FILE}",
            "tensorboard_uri": self.tensorboard.uri,
            "mlflow_run": mlflow_run,
        }

    def finish(self, tags: dict[str, str]) -> None:
        """The run succeeded: close the event files, end the MLflow run FINISHED."""
        self.finished = True
        self._end("FINISHED", tags)

    def close(self) -> None:
        """End whatever is still open: FAILED, or KILLED when the run was interrupted."""
        if not self.finished:
            self.finished = True
            interrupted = self.stop is not None and getattr(self.stop, "requested", False)
            self._end("KILLED" if interrupted else "FAILED", {})

    def _end(self, status: str, tags: dict[str, str]) -> None:
        if self.tensorboard is not None:
            try:
                self.tensorboard.close()
            except Exception as exc:  # the model is already safe
                log.warning("TensorBoard files not complete: %s", exc)
        if self.mlflow is not None:
            try:
                self.mlflow.end(status, tags)
            except Exception as exc:
                log.warning("MLflow run %s not ended: %s", self.mlflow.run.run_id, _short(exc))


def open_watchers(
    step: FinetuneStepSpec, is_main: bool, dataset_version: str | None, stop: Any = None
) -> Watchers:
    """The sinks of rank 0 (none on other ranks); MLflow's run is created now, so a server
    that is down is known before training starts."""
    if not is_main:
        return Watchers()
    uri = tensorboard_uri(step.output_uri)
    watchers = Watchers(main=True, tensorboard=TensorBoardSink(uri), stop=stop)
    tracking = step.spec.tracking
    cfg = tracking.mlflow if tracking is not None else None
    if cfg is None:
        return watchers
    try:
        watchers.mlflow = MlflowSink.start(cfg, step, run_params(step, dataset_version))
    except Exception as exc:
        problem = f"MLflow at {cfg.tracking_uri} is unavailable: {_short(exc)}"
        if cfg.required:
            raise WorkloadError("TrackingUnavailable", problem) from None
        log.warning(
            "%s; training goes on without MLflow (TensorBoard files and the training report "
            "are still written; set tracking.mlflow.required to fail instead)",
            problem,
        )
    return watchers


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "..."
