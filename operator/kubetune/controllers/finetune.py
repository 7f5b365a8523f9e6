"""The FinetuneJob controller: waits for its Dataset (and ``from`` model), runs one finetune
Job per run, polls live progress while it runs, and exports the latest training loss."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetune.api.contract import RESULT_LOSS_KEYS
from kubetune.controllers import metrics
from kubetune.controllers.base import KindController


def latest_loss(status: Mapping[str, Any]) -> float | None:
    """The live loss while running, else the final loss of the run's results."""
    progress = status.get("progress") or {}
    if isinstance(progress.get("loss"), int | float):
        return float(progress["loss"])
    results = status.get("results") or {}
    finals = [results[k] for k in RESULT_LOSS_KEYS if isinstance(results.get(k), int | float)]
    return float(finals[0]) if finals else None


def observe_status(
    namespace: str, name: str, status: Mapping[str, Any], previous: Mapping[str, Any]
) -> None:
    loss = latest_loss(status)
    if loss is not None:
        metrics.record_loss(namespace, name, loss)


CONTROLLER = KindController(
    kind="FinetuneJob",
    polls_progress=True,
    observe_status=observe_status,
    series=(metrics.TRAINING_LOSS,),
)
