"""`kubetune collector`: the FeedbackLoops' feedback endpoint (`kubetune approve`, a person's
decision on a challenger, is in :mod:`kubetune.cli.approve`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from kubetune.cli.common import Verbose, console, fail

if TYPE_CHECKING:
    from kubetune.collector.config import CollectorConfig

Store = Annotated[
    str,
    typer.Option(
        envvar="KUBETUNE_COLLECTOR_STORE",
        help="Feedback store root (file://, pvc:// or s3://): loop NS/NAME writes under "
        "STORE/NS/NAME, which is that FeedbackLoop's spec.feedback.uri.",
    ),
]
Tokens = Annotated[
    Path,
    typer.Option(
        envvar="KUBETUNE_COLLECTOR_TOKENS",
        help="YAML list of {name, token, loops: [NS/LOOP patterns]} (a mounted Secret).",
    ),
]
Host = Annotated[str, typer.Option(help="Address to listen on.")]
Port = Annotated[int, typer.Option(min=0, max=65535, help="Port (0: any free port, printed).")]
Loops = Annotated[
    list[str] | None,
    typer.Option("--loop", help="Accept only these NS/LOOP (repeatable; default: any)."),
]
# the minimums are CollectorConfig's (collector/config.py MINIMUMS), checked when it is built
MaxBodyBytes = Annotated[
    int, typer.Option(help="Largest request body, also decompressed (413). At least 1024.")
]
MaxRecords = Annotated[int, typer.Option(help="Most records per request (400). At least 1.")]
MaxRecordBytes = Annotated[
    int, typer.Option(help="Largest stored line of one record (that record: 400). At least 1024.")
]
MaxPendingBytes = Annotated[
    int,
    typer.Option(
        help="Records waiting for a commit, over which requests get 429 (a batch larger than "
        "this alone: 413). At least 1024."
    ),
]
MaxInflight = Annotated[int, typer.Option(help="Requests handled at once (429). At least 1.")]
BodyTimeout = Annotated[float, typer.Option(help="Seconds to receive a body (408). At least 0.1.")]
CommitTimeout = Annotated[
    float,
    typer.Option(
        help="Seconds a request waits for its commit before a 503 (a stalled store or "
        "committer; the collector reports not ready). At least 0.1."
    ),
]
SegmentBytes = Annotated[int, typer.Option(help="A segment's largest size. At least 1024.")]
SegmentSeconds = Annotated[
    float, typer.Option(help="A segment's longest life in seconds. At least 1.")
]
RetentionHours = Annotated[
    float,
    typer.Option(help="How long a record id is remembered (exactly once). At least 0.01."),
]
AccessLog = Annotated[bool, typer.Option(help="Log every request (no headers).")]
Workers = Annotated[
    int,
    typer.Option(
        min=1,
        help="HTTP processes serving the port; above 1, a supervisor forks them and one "
        "committer process that writes the store for all (give it that many cores).",
    ),
]


def collector(
    store: Store,
    tokens: Tokens,
    host: Host = "127.0.0.1",
    port: Port = 8080,
    loop: Loops = None,
    max_body_bytes: MaxBodyBytes = 8 << 20,
    max_records: MaxRecords = 10_000,
    max_record_bytes: MaxRecordBytes = 1 << 20,
    max_pending_bytes: MaxPendingBytes = 64 << 20,
    max_inflight: MaxInflight = 64,
    body_timeout: BodyTimeout = 30.0,
    commit_timeout: CommitTimeout = 30.0,
    segment_bytes: SegmentBytes = 1 << 20,
    segment_seconds: SegmentSeconds = 300.0,
    retention_hours: RetentionHours = 168.0,
    access_log: AccessLog = False,
    workers: Workers = 1,
    verbose: Verbose = False,
) -> None:
    """Serve POST /v1/feedback/NS/LOOP: durable, exactly-once feedback for FeedbackLoops."""
    import logging

    from kubetune.collector.auth import TokenFileError
    from kubetune.collector.config import CollectorConfig
    from kubetune.collector.store import backend_for

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        backend_for(store)
        config = CollectorConfig(
            store=store,
            tokens_file=tokens,
            loops=tuple(loop or ()),
            max_body_bytes=max_body_bytes,
            max_records=max_records,
            max_record_bytes=max_record_bytes,
            max_inflight=max_inflight,
            max_pending_bytes=max_pending_bytes,
            body_timeout=body_timeout,
            commit_timeout=commit_timeout,
            segment_bytes=segment_bytes,
            segment_seconds=segment_seconds,
            retention_seconds=retention_hours * 3600.0,
        )
    except (OSError, ValueError, TokenFileError) as exc:
        fail(str(exc), 2)
    _serve(config, host, port, workers, access_log)


def _serve(config: CollectorConfig, host: str, port: int, workers: int, access_log: bool) -> None:
    """Serve until stopped (Ctrl-C ends quietly); exit 2 when the port or the store fails."""
    from kubetune.collector.auth import TokenFileError
    from kubetune.collector.workers import run_collector

    def ready(bound: int) -> None:
        console.print(f"collector listening on http://{host}:{bound}", markup=False)

    try:
        code = run_collector(config, host, port, workers, access_log=access_log, on_ready=ready)
    except (OSError, ValueError, TokenFileError) as exc:
        fail(str(exc), 2)
    except KeyboardInterrupt:
        return
    if code:
        raise typer.Exit(code)
