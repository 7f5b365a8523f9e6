"""What `kubetune run` and `kubetune status` show: live table, `kubectl get` columns, summary."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from kubetune.api.resources import KIND_INFO

PHASE_STYLE = {
    "Ready": "green",
    "Succeeded": "green",
    "Running": "cyan",
    "Waiting": "yellow",
    "Pending": "dim",
    "Suspended": "magenta",
    "Failed": "bold red",
}


def json_path(body: dict[str, Any], path: str) -> Any:
    """Evaluate a printer-column path like ``.status.progress.step``."""
    value: Any = body
    for part in path.strip(".").split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def live_table(resources: list[dict[str, Any]], notes: list[str] | None = None) -> Any:
    """One row per resource: phase, progress bar for training, loss, ETA, message."""
    table = Table(expand=True, show_lines=False)
    for column, kwargs in (
        ("RESOURCE", {"no_wrap": True}),
        ("PHASE", {"no_wrap": True}),
        ("PROGRESS", {"width": 28}),
        ("LOSS", {"justify": "right"}),
        ("ETA", {"justify": "right"}),
        ("MESSAGE", {"overflow": "fold", "ratio": 1}),
    ):
        table.add_column(column, **kwargs)
    for body in resources:
        status = body.get("status") or {}
        phase = status.get("phase") or "Pending"
        progress = status.get("progress") or {}
        bar: Any = ""
        if progress.get("totalSteps"):
            total, step = progress["totalSteps"], progress.get("step") or 0
            bar = Group(
                ProgressBar(total=total, completed=step, width=20),
                Text(f"{step}/{total}", style="dim"),
            )
        elif phase in ("Ready", "Succeeded"):
            bar = ProgressBar(total=1, completed=1, width=20)
        table.add_row(
            f"{body['kind']}/{body['metadata']['name']}",
            Text(phase, style=PHASE_STYLE.get(phase, "")),
            bar,
            _fmt(progress.get("loss")) if phase == "Running" else "",
            _eta(progress.get("etaSeconds")) if phase == "Running" else "",
            status.get("message") or "",
        )
    if notes:
        return Group(table, Text("\n".join(f"note: {n}" for n in notes[-5:]), style="dim"))
    return table


def status_tables(resources: list[dict[str, Any]], wide: bool = False) -> list[Table]:
    """One table per kind with the CRD's printer columns, like `kubectl get`."""
    tables = []
    for kind, info in KIND_INFO.items():
        rows = [b for b in resources if b["kind"] == kind]
        if not rows:
            continue
        columns = [c for c in info.columns if wide or c.priority == 0]
        table = Table(title=f"{info.plural}.kubetune.dev", title_justify="left", box=None)
        table.add_column("NAME", no_wrap=True)
        for column in columns:
            table.add_column(column.name.upper(), no_wrap=column.type != "string")
        for body in rows:
            cells = []
            for column in columns:
                value = json_path(body, column.json_path)
                cells.append(_age(value) if column.type == "date" else _fmt(value))
            table.add_row(body["metadata"]["name"], *cells)
        tables.append(table)
    return tables


def _age(value: Any) -> str:
    from datetime import UTC, datetime

    if not value:
        return ""
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(str(value))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def summary_lines(resources: list[dict[str, Any]]) -> list[str]:
    """Artifacts, key metrics, failures with their log, and the evaluation report."""
    lines = []
    for body in resources:
        status = body.get("status") or {}
        name = f"{body['kind']}/{body['metadata']['name']}"
        phase = status.get("phase") or "Pending"
        lines.append(
            f"{name}: {phase}" + (f" - {status['message']}" if status.get("message") else "")
        )
        if status.get("outputUri"):
            lines.append(f"    artifact: {status['outputUri']}")
        results = status.get("results") or {}
        if results:
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in list(results.items())[:8])
            lines.append(f"    metrics: {shown}")
        if status.get("reportUri"):
            lines.append(f"    report: {status['reportUri']}")
        if phase == "Failed" and status.get("logPath"):
            lines.append(f"    log: {status['logPath']}")
    return lines
