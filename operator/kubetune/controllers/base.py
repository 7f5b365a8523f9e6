"""What a kind's controller module declares: its kind, whether it polls live progress, and
which metrics its status feeds. The shared machinery (:mod:`kubetune.controllers.reconcile`,
:mod:`kubetune.controllers.registry`) does the rest the same way for every kind."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.metrics import MetricWrapperBase

# (namespace, name, status just written, the status it replaced) -> None
StatusObserver = Callable[[str, str, Mapping[str, Any], Mapping[str, Any]], None]


def _ignore(
    namespace: str, name: str, status: Mapping[str, Any], previous: Mapping[str, Any]
) -> None:
    return None


@dataclass(frozen=True)
class KindController:
    """The kind-specific parts of a controller."""

    kind: str
    # Read the running pod's progress endpoint while a run is Running.
    polls_progress: bool = False
    # Feed per-resource metrics from a freshly written status and the one it replaced.
    observe_status: StatusObserver = field(default=_ignore)
    # The per-resource series (labels namespace, name, ...) it feeds: dropped on deletion.
    series: tuple[MetricWrapperBase, ...] = ()
