"""The settings of a collector process (``kubetune collector --help`` documents them).

Kept apart from :mod:`kubetune.collector.server` so that the supervisor of several workers can
read them before the server (and ``prometheus_client``) is imported: the metrics of several
processes are only shared when ``PROMETHEUS_MULTIPROC_DIR`` is set before that import.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from kubetune.collector.store import writer_id

# field -> (its `kubetune collector` option, the smallest value that option takes, the
# option's unit in the field's unit): a smaller limit would refuse every request
MINIMUMS: dict[str, tuple[str, float, float]] = {
    "max_body_bytes": ("--max-body-bytes", 1024, 1),
    "max_records": ("--max-records", 1, 1),
    "max_record_bytes": ("--max-record-bytes", 1024, 1),
    "max_inflight": ("--max-inflight", 1, 1),
    "max_pending_bytes": ("--max-pending-bytes", 1024, 1),
    "body_timeout": ("--body-timeout", 0.1, 1),
    "commit_timeout": ("--commit-timeout", 0.1, 1),
    "segment_bytes": ("--segment-bytes", 1024, 1),
    "segment_seconds": ("--segment-seconds", 1, 1),
    "retention_seconds": ("--retention-hours", 0.01, 3600),
}


@dataclass
class CollectorConfig:
    """Settings of one collector process; every worker of a supervisor gets its own writer."""

    store: str
    tokens_file: Path | None = None
    loops: tuple[str, ...] = ()
    max_body_bytes: int = 8 << 20
    max_records: int = 10_000
    max_record_bytes: int = 1 << 20
    max_inflight: int = 64
    max_pending_bytes: int = 64 << 20
    body_timeout: float = 30.0
    commit_timeout: float = 30.0
    segment_bytes: int = 1 << 20
    segment_seconds: float = 300.0
    retention_seconds: float = 7 * 86400.0
    writer: str = field(default_factory=writer_id)

    def __post_init__(self) -> None:
        """Refuse a limit below its minimum (``MINIMUMS``), naming the option; ValueError."""
        for name, (option, minimum, unit) in MINIMUMS.items():
            value = getattr(self, name) / unit
            if not math.isfinite(value):
                raise ValueError(f"{option} must be a finite number, not {value}")
            if value < minimum:
                raise ValueError(f"{option} must be at least {minimum:g}, not {value:g}")
