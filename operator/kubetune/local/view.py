"""What `kubetune run` and `kubetune status` show: live table, `kubectl get` columns, summary.

Resources another resource created (e.g. a FeedbackLoop's cycles) are shown under their owner:
indented below it in the live table and the summary, ordered by their cycle (or check slot)
label, with an OWNER column in the `kubectl get` tables. A kind may add its own summary lines
in place of the artifact line (``summary_lines`` of :mod:`kubetune.local.kinds`).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from kubetune.api.contract import LABEL_CYCLE, LABEL_DRIFT_CHECK
from kubetune.api.kinds import KIND_INFO
from kubetune.local.applier import patched_fields
from kubetune.local.kinds import local_kind

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


def _owner_uid(body: dict[str, Any]) -> str | None:
    for ref in body["metadata"].get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return str(ref.get("uid") or "") or None
    return None


def owner_of(body: dict[str, Any]) -> str:
    """``Kind/name`` of the resource's controller, or ``""``."""
    for ref in body["metadata"].get("ownerReferences") or []:
        if isinstance(ref, dict) and ref.get("controller"):
            return f"{ref.get('kind')}/{ref.get('name')}"
    return ""


def _owned_order(body: dict[str, Any]) -> tuple[int, int, str]:
    """Cycle (or drift-check slot) first, then the kinds in pipeline order."""
    labels = body["metadata"].get("labels") or {}
    number = labels.get(LABEL_CYCLE) or labels.get(LABEL_DRIFT_CHECK) or ""
    kinds = list(KIND_INFO)
    kind = kinds.index(body["kind"]) if body["kind"] in kinds else len(kinds)
    return (int(number) if number.isdigit() else 0, kind, body["metadata"]["name"])


def by_owner(resources: list[dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """(depth, body): each resource followed by those it controls, recursively.

    Resources keep their order; the owned ones of each follow it ordered by cycle and kind.
    A resource whose owner is not in ``resources`` is shown at the top level.
    """
    uids = {str(b["metadata"].get("uid")) for b in resources if b["metadata"].get("uid")}
    owned: dict[str, list[dict[str, Any]]] = {}
    roots = []
    for body in resources:
        owner = _owner_uid(body)
        if owner is not None and owner in uids:
            owned.setdefault(owner, []).append(body)
        else:
            roots.append(body)
    out: list[tuple[int, dict[str, Any]]] = []

    def visit(body: dict[str, Any], depth: int) -> None:
        out.append((depth, body))
        uid = str(body["metadata"].get("uid"))
        for child in sorted(owned.pop(uid, []), key=_owned_order):
            visit(child, depth + 1)

    for body in roots:
        visit(body, 0)
    return out


def _label(body: dict[str, Any], depth: int) -> str:
    name = f"{body['kind']}/{body['metadata']['name']}"
    return f"{'  ' * (depth - 1)}└ {name}" if depth else name


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
    for depth, body in by_owner(resources):
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
            _label(body, depth),
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
        # The user's resources first, then those a loop made, by owner and cycle.
        rows.sort(key=lambda b: (bool(owner_of(b)), owner_of(b), _owned_order(b)))
        with_owner = any(owner_of(b) for b in rows)
        columns = [c for c in info.columns if wide or c.priority == 0]
        table = Table(title=f"{info.plural}.kubetune.dev", title_justify="left", box=None)
        table.add_column("NAME", no_wrap=True)
        for column in columns:
            table.add_column(column.name.upper(), no_wrap=column.type != "string")
        if with_owner:
            table.add_column("OWNER", no_wrap=True)
        for body in rows:
            cells = []
            for column in columns:
                value = json_path(body, column.json_path)
                cells.append(_age(value) if column.type == "date" else _fmt(value))
            if with_owner:
                cells.append(owner_of(body))
            table.add_row(body["metadata"]["name"], *cells)
        tables.append(table)
    return tables


def _age(value: Any) -> str:
    if not value:
        return ""
    seconds = int((datetime.now(UTC) - datetime.fromisoformat(str(value))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def summary_lines(
    resources: list[dict[str, Any]], now: datetime | None = None, workdir: Path | None = None
) -> list[str]:
    """Artifacts, key metrics, failures with their log, and the evaluation report (commands
    it suggests name ``workdir``, the run's)."""
    lines = []
    for depth, body in by_owner(resources):
        status = body.get("status") or {}
        phase = status.get("phase") or "Pending"
        indent = "  " * depth
        lines.append(
            f"{indent}{body['kind']}/{body['metadata']['name']}: {phase}"
            + (f" - {status['message']}" if status.get("message") else "")
        )
        own_lines = local_kind(body["kind"]).summary_lines
        details = own_lines(body, now, workdir) if own_lines is not None else []
        if status.get("outputUri") and own_lines is None:
            details.append(f"artifact: {status['outputUri']}")
        results = status.get("results") or {}
        if results:
            shown = ", ".join(f"{k}={_fmt(v)}" for k, v in list(results.items())[:8])
            details.append(f"metrics: {shown}")
        if status.get("reportUri"):
            details.append(f"report: {status['reportUri']}")
        if status.get("tensorboardUri"):
            details.append(f"tensorboard: {status['tensorboardUri']}")
        if (status.get("mlflow") or {}).get("url"):
            details.append(f"mlflow run: {status['mlflow']['url']}")
        if phase == "Failed" and status.get("logPath"):
            details.append(f"log: {status['logPath']}")
        lines.extend(f"{indent}    {detail}" for detail in details)
    return lines


def patched_lines(patched: dict[str, dict[str, Any]]) -> list[str]:
    """Objects outside the store a planner patched, as recorded (nothing was sent anywhere)."""
    lines = []
    for key, record in sorted(patched.items()):
        shown = ", ".join(patched_fields(record)) or "no fields"
        lines.append(f"{key} (no cluster, recorded only): {shown}")
    return lines


def usage_lines(resources: list[dict[str, Any]]) -> list[str]:
    """GPU and CPU hours of the current runs (status.usage), per namespace: the same numbers
    the operator exports as kubetune_gpu_seconds_total / kubetune_cpu_seconds_total."""
    totals: dict[str, list[float]] = {}
    for body in resources:
        usage = (body.get("status") or {}).get("usage") or {}
        if not usage:
            continue
        namespace = str(body["metadata"].get("namespace") or "default")
        total = totals.setdefault(namespace, [0.0, 0.0, 0])
        total[0] += float(usage.get("gpuSeconds") or 0)
        total[1] += float(usage.get("cpuSeconds") or 0)
        total[2] += 1
    return [
        f"usage {namespace}: {gpu / 3600:.2f} GPU-hours, {cpu / 3600:.2f} CPU-hours "
        f"({int(runs)} runs)"
        for namespace, (gpu, cpu, runs) in sorted(totals.items())
    ]
