"""The collector's Prometheus series (one set per process; summed over a supervisor's
processes through ``prometheus_client``'s multiprocess mode, ``PROMETHEUS_MULTIPROC_DIR``).

Import it only once that variable is set, when it is (see :mod:`kubetune.collector.config`).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Metrics"]


class Metrics:
    """The collector's Prometheus series; summed over the workers of a supervisor (each worker
    writes its own files under ``PROMETHEUS_MULTIPROC_DIR``, any worker serves the sum)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ["namespace", "loop"]
        self.accepted = Counter(
            "kubetune_collector_records_accepted",
            "Records committed to a loop's store.",
            labels,
            registry=self.registry,
        )
        self.duplicates = Counter(
            "kubetune_collector_records_duplicate",
            "Records acknowledged without writing: their id was already committed.",
            labels,
            registry=self.registry,
        )
        self.rejected = Counter(
            "kubetune_collector_records_rejected",
            "Records (or whole requests) refused, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "kubetune_collector_bytes",
            "Bytes of committed JSONL lines.",
            labels,
            registry=self.registry,
        )
        self.requests = Counter(
            "kubetune_collector_requests",
            "HTTP requests by status code.",
            ["code"],
            registry=self.registry,
        )
        self.commit = Histogram(
            "kubetune_collector_commit_seconds",
            "Time from a request's new records being queued to their durable commit.",
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.pending = Gauge(
            "kubetune_collector_pending_bytes",
            "Bytes of records waiting for a commit (store lag).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.lag = Gauge(
            "kubetune_collector_store_lag_seconds",
            "Age of the oldest record waiting for a commit.",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.segments = Counter(
            "kubetune_collector_segment_commits",
            "Group commits to a segment (one append and fdatasync; one PUT on S3).",
            labels,
            registry=self.registry,
        )
