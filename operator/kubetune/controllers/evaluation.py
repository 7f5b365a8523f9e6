"""The Evaluation controller: waits for candidate, baseline and data, runs one evaluate Job
per run, and exports its scores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kubetune.controllers import metrics
from kubetune.controllers.base import KindController


def observe_status(
    namespace: str, name: str, status: Mapping[str, Any], previous: Mapping[str, Any]
) -> None:
    results = status.get("results") or {}
    scores = {k: float(v) for k, v in results.items() if isinstance(v, int | float)}
    if scores:
        metrics.record_scores(namespace, name, scores)


CONTROLLER = KindController(
    kind="Evaluation", observe_status=observe_status, series=(metrics.EVALUATION_SCORE,)
)
