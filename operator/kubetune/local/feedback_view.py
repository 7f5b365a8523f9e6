"""What `kubetune run` and `kubetune status` add for a FeedbackLoop: its champion, latest
cycle (with the preference algorithm it trained with), approvals, and what starts the next cycle
locally."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubetune.api.feedback import FeedbackLoopStatus

# status.pendingRecords: the wire name of the field, from the model.
_PENDING_RECORDS = str(FeedbackLoopStatus.model_fields["pending_records"].alias)


def loop_lines(
    body: dict[str, Any], now: datetime | None = None, workdir: Path | None = None
) -> list[str]:
    """A FeedbackLoop's champion, latest cycle and what would start the next one locally (the
    approve command names ``workdir``, the run's, as a shell word)."""
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    lines = []
    if status.get("champion"):
        cycle = status.get("championCycle")
        origin = f"cycle c{cycle}" if cycle is not None else "spec.champion"
        lines.append(f"champion: {status['champion']} ({origin})")
    history = status.get("history") or []
    if history:
        latest = history[0]
        lines.append(
            f"latest cycle {latest.get('runId')}: {latest.get('reason') or latest.get('phase')}"
            + (f" - {latest['message']}" if latest.get("message") else "")
        )
    where = shlex.quote(str(workdir)) if workdir is not None else "WORKDIR"
    for request in status.get("awaitingApproval") or []:
        run, name = request.get("runId"), body["metadata"]["name"]
        lines.append(
            f"{run} awaits approval: `kubetune approve {name} {run} --workdir {where}` "
            "(or --reject), then run again"
        )
        for label, key in (("report", "reportUri"), ("feedback", "feedbackUri")):
            if request.get(key):
                lines.append(f"  {label}: {request[key]}")
        if request.get("deadline"):
            lines.append(f"  rejected unless approved by {request['deadline']}")
    if status.get("activeRuns") or status.get("phase") != "Ready":
        return lines
    triggers = spec.get("triggers") or {}
    if triggers.get("minNewRecords") is not None:
        pending = status.get(_PENDING_RECORDS)
        lines.append(
            f"new feedback records: {'?' if pending is None else pending}"
            f"/{triggers['minNewRecords']}; each `kubetune run` counts them again"
        )
    if triggers.get("schedule"):
        upcoming = next_schedule(str(triggers["schedule"]), now or datetime.now(UTC))
        lines.append(
            f"next scheduled cycle: {upcoming.isoformat(timespec='minutes')} "
            f"({triggers['schedule']}); `kubetune run` does not wait for it: run it again then"
        )
    return lines


def next_schedule(expression: str, after: datetime) -> datetime:
    """The first time of a cron schedule after ``after``."""
    from croniter import croniter

    upcoming: datetime = croniter(expression, after).get_next(datetime)
    return upcoming
