"""Prometheus metrics of the operator (prometheus-client) and their HTTP exporter.

One registry, :data:`REGISTRY`, holds every series the operator exports:

* ``kubetune_reconcile_total{kind}``, ``kubetune_reconcile_errors_total{kind,reason}`` and the
  ``kubetune_reconcile_duration_seconds{kind}`` histogram;
* ``kubetune_resources{kind,phase}``: resources by kind and phase (computed at scrape time);
* ``kubetune_job_duration_seconds{kind,outcome}``: wall time of finished runs;
* ``kubetune_gpu_seconds_total{namespace}``: GPU-seconds consumed by finished runs;
* ``kubetune_training_loss{namespace,name}`` and
  ``kubetune_evaluation_score{namespace,name,metric}``: the latest values per resource;
* ``kubetune_feedback_pending_records{namespace,name}``, ``kubetune_feedback_cycles{namespace,
  name}`` (cycles started) and ``kubetune_feedback_promotions_total{namespace,name}``: per
  FeedbackLoop.

* ``kubetune_leader``: 1 on the replica that acts, 0 on a standby (every replica serves
  ``/metrics`` from its start, so a standby is a healthy scrape target too).

The controllers call the ``record_*`` functions; :func:`start_exporter` serves ``/metrics``.
"""

from __future__ import annotations

import contextlib
import threading
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILES = Counter(
    "kubetune_reconcile",
    "Reconciliations of kubetune resources.",
    ["kind"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "kubetune_reconcile_errors",
    "Reconciliations that failed and will be retried.",
    ["kind", "reason"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "kubetune_reconcile_duration_seconds",
    "Time to reconcile one resource (observe, plan, apply).",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
JOB_SECONDS = Histogram(
    "kubetune_job_duration_seconds",
    "Wall time of finished runs, from the Job's start to its completion.",
    ["kind", "outcome"],
    buckets=(10, 30, 60, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400),
    registry=REGISTRY,
)


def _usage_seconds(device: str) -> Counter:
    """``kubetune_<device>_seconds_total{namespace,kind,queue}``: requested devices x wall time."""
    return Counter(
        f"kubetune_{device.lower()}_seconds",
        f"{device}-seconds of finished runs (requested {device}s x wall time of their pods; "
        "status.usage).",
        ["namespace", "kind", "queue"],
        registry=REGISTRY,
    )


GPU_SECONDS = _usage_seconds("GPU")
CPU_SECONDS = _usage_seconds("CPU")
TRAINING_LOSS = Gauge(
    "kubetune_training_loss",
    "Latest training loss of a FinetuneJob (live progress, then the final result).",
    ["namespace", "name"],
    registry=REGISTRY,
)
EVALUATION_SCORE = Gauge(
    "kubetune_evaluation_score",
    "Latest scores of an Evaluation, by metric.",
    ["namespace", "name", "metric"],
    registry=REGISTRY,
)

FEEDBACK_PENDING = Gauge(
    "kubetune_feedback_pending_records",
    "Feedback records of a FeedbackLoop that arrived since its latest cycle started.",
    ["namespace", "name"],
    registry=REGISTRY,
)
FEEDBACK_CYCLES = Gauge(
    "kubetune_feedback_cycles",
    "Cycles a FeedbackLoop has started.",
    ["namespace", "name"],
    registry=REGISTRY,
)
IS_LEADER = Gauge(
    "kubetune_leader",
    "1 while this replica runs the controllers (it holds the leader Lease, or runs without "
    "leader election); 0 while it stands by.",
    registry=REGISTRY,
)
FEEDBACK_PROMOTIONS = Counter(
    "kubetune_feedback_promotions",
    "Challengers a FeedbackLoop promoted to champion (seen by this operator process).",
    ["namespace", "name"],
    registry=REGISTRY,
)
PER_LOOP = (FEEDBACK_PENDING, FEEDBACK_CYCLES, FEEDBACK_PROMOTIONS)


class PhaseCollector(Collector):
    """``kubetune_resources{kind,phase}``, counted at scrape time from the latest phases."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._phases: dict[tuple[str, str, str], tuple[str, str]] = {}

    def set(self, kind: str, namespace: str, name: str, phase: str | None) -> None:
        with self._lock:
            self._phases[(kind, namespace, name)] = (kind, phase or "Unknown")

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self._lock:
            self._phases.pop((kind, namespace, name), None)

    def counts(self) -> Mapping[tuple[str, str], int]:
        with self._lock:
            return Tally(self._phases.values())

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "kubetune_resources", "kubetune resources by kind and phase.", labels=["kind", "phase"]
        )
        for (kind, phase), count in sorted(self.counts().items()):
            family.add_metric([kind, phase], count)
        yield family


PHASES = PhaseCollector()
REGISTRY.register(PHASES)


def record_reconcile(kind: str, seconds: float, error: str | None = None) -> None:
    """Count one reconciliation, its latency and, if it failed, why (an exception name)."""
    RECONCILES.labels(kind).inc()
    RECONCILE_SECONDS.labels(kind).observe(seconds)
    if error is not None:
        RECONCILE_ERRORS.labels(kind, error).inc()


def record_phase(kind: str, namespace: str, name: str, phase: str | None) -> None:
    """The current phase of a resource (for ``kubetune_resources``)."""
    PHASES.set(kind, namespace, name, phase)


def record_finished_run(
    kind: str,
    namespace: str,
    outcome: str,
    seconds: float,
    usage: Mapping[str, Any] | None = None,
) -> None:
    """A run that just finished: its duration and the GPU- and CPU-seconds of its pods (the
    status.usage the planner computed), by namespace, kind and Kueue queue."""
    JOB_SECONDS.labels(kind, outcome).observe(max(seconds, 0.0))
    if usage:
        queue = str(usage.get("queue") or "")
        GPU_SECONDS.labels(namespace, kind, queue).inc(max(float(usage.get("gpuSeconds", 0)), 0))
        CPU_SECONDS.labels(namespace, kind, queue).inc(max(float(usage.get("cpuSeconds", 0)), 0))


def record_loss(namespace: str, name: str, loss: float) -> None:
    """The latest training loss of a FinetuneJob."""
    TRAINING_LOSS.labels(namespace, name).set(loss)


def record_scores(namespace: str, name: str, scores: Mapping[str, float]) -> None:
    """The latest scores of an Evaluation."""
    for metric, value in scores.items():
        EVALUATION_SCORE.labels(namespace, name, metric).set(value)


def record_feedback(
    namespace: str, name: str, pending_records: int | None, cycles: int, promoted: bool
) -> None:
    """A FeedbackLoop's latest counts, and whether its status just recorded a promotion."""
    if pending_records is not None:
        FEEDBACK_PENDING.labels(namespace, name).set(pending_records)
    FEEDBACK_CYCLES.labels(namespace, name).set(cycles)
    promotions = FEEDBACK_PROMOTIONS.labels(namespace, name)  # a 0 series from the start
    if promoted:
        promotions.inc()


def forget_resource(
    kind: str, namespace: str, name: str, series: Iterable[MetricWrapperBase] = ()
) -> None:
    """Drop the per-resource series of a deleted resource: its phase, and its samples of the
    metrics ``series`` its kind feeds (labelled namespace, name, ...; its controller's)."""
    PHASES.forget(kind, namespace, name)
    for metric in series:
        for labels in _series_labels(metric):
            if labels[:2] == (namespace, name):
                _remove(metric, *labels)


def _series_labels(metric: MetricWrapperBase) -> set[tuple[str, ...]]:
    """The label values of every series of ``metric`` (a counter's ``_created`` included)."""
    return {
        tuple(sample.labels.values()) for family in metric.collect() for sample in family.samples
    }


def _remove(metric: MetricWrapperBase, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)


def start_exporter(port: int, addr: str = "0.0.0.0") -> Any:
    """Serve ``/metrics`` of :data:`REGISTRY` on ``addr:port``; returns the server to close."""
    server, _thread = start_http_server(port, addr=addr, registry=REGISTRY)
    return server
