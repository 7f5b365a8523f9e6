"""The settings of a collector process (``kubetune collector --help`` documents them).

Kept apart from :mod:`kubetune.collector.server` so that the supervisor of several workers can
read them before the server (and ``prometheus_client``) is imported: the metrics of several
processes are only shared when ``PROMETHEUS_MULTIPROC_DIR`` is set before that import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kubetune.collector.store import writer_id


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
    segment_bytes: int = 1 << 20
    segment_seconds: float = 300.0
    retention_seconds: float = 7 * 86400.0
    writer: str = field(default_factory=writer_id)
