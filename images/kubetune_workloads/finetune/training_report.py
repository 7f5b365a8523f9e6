"""``training-report.html``: a FinetuneJob run's curves in one self-contained page.

Built from the artifact's ``metrics.jsonl`` (so a resumed run's report holds the curves of
every attempt up to its checkpoint, then the rest) and ``results.json`` numbers: training and
evaluation loss, evaluation perplexity, learning rate, gradient norm, tokens/s and peak
memory, with checkpoints, resumes and rollbacks marked on every curve. Like the evaluation
report: no scripts, no external assets; charts are inline SVG. Written to a temporary name and
renamed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from kubetune.api.steps import FinetuneStepSpec

from kubetune_workloads.htmlpage import BASE_STYLE, page
from kubetune_workloads.htmlpage import number as _num

REPORT_FILE = "training-report.html"
METRICS_FILE = "metrics.jsonl"
MAX_DOTS = 200  # points drawn as dots too (hover titles) up to this many per series
TRAIN_COLOR = "#2563eb"
EVAL_COLOR = "#f59e0b"
MARKER_STYLE = {  # event -> (colour, dash pattern, label)
    "checkpoint": ("#9ca3af", "4 3", "checkpoint"),
    "resume": ("#dc2626", "", "resumed"),
    "rollback": ("#7c3aed", "", "rolled back"),
}
# chart title, [(metrics.jsonl key, label, colour)]
CHARTS: list[tuple[str, list[tuple[str, str, str]]]] = [
    ("Loss", [("loss", "train", TRAIN_COLOR), ("eval_loss", "eval", EVAL_COLOR)]),
    ("Eval perplexity", [("eval_perplexity", "eval", EVAL_COLOR)]),
    ("Learning rate", [("learning_rate", "lr", "#059669")]),
    ("Gradient norm (before clipping)", [("grad_norm", "grad norm", "#0891b2")]),
    ("Tokens per second", [("tokens_per_second", "tokens/s", "#4f46e5")]),
    ("Peak memory (GiB)", [("peak_memory_gib", "GiB", "#db2777")]),
]
STYLE = BASE_STYLE


@dataclass(frozen=True)
class Frame:
    """Plot area of one chart: data ranges and pixel box."""

    x0: float
    x1: float
    y0: float
    y1: float
    left: int = 60
    top: int = 28
    width: int = 380
    height: int = 170

    def x(self, value: float) -> float:
        return self.left + (value - self.x0) / (self.x1 - self.x0) * self.width

    def y(self, value: float) -> float:
        return self.top + self.height - (value - self.y0) / (self.y1 - self.y0) * self.height


def read_records(out: Path) -> list[dict[str, Any]]:
    """The rows of ``metrics.jsonl`` (empty when the file is missing)."""
    path = out / METRICS_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def series_of(records: list[dict[str, Any]], key: str) -> list[tuple[float, float]]:
    """(step, value) of every record that has ``key``."""
    return [
        (float(r["step"]), float(r[key]))
        for r in records
        if isinstance(r.get(key), int | float) and "event" not in r
    ]


def events_of(records: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(step, event) of the checkpoint, resume and rollback markers, in order."""
    return [(int(r["step"]), str(r["event"])) for r in records if r.get("event") in MARKER_STYLE]


def _frame(series: list[list[tuple[float, float]]], events: list[tuple[int, str]]) -> Frame:
    xs = [x for s in series for x, _ in s] + [float(step) for step, _ in events]
    ys = [y for s in series for _, y in s]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    pad = (y1 - y0) * 0.05 or abs(y1) * 0.05 or 1.0
    return Frame(x0, x1 if x1 > x0 else x0 + 1, y0 - pad, y1 + pad)


def _axes(f: Frame, title: str) -> list[str]:
    bottom, right = f.top + f.height, f.left + f.width
    mid = (f.y0 + f.y1) / 2
    parts = [
        f'<text x="{f.left + f.width / 2}" y="16" text-anchor="middle" font-size="13" '
        f'font-weight="600">{escape(title)}</text>',
        f'<rect x="{f.left}" y="{f.top}" width="{f.width}" height="{f.height}" fill="none" '
        'stroke="#e5e7eb"/>',
        f'<line x1="{f.left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#9ca3af"/>',
        f'<text x="{f.left}" y="{bottom + 16}" text-anchor="middle" font-size="10">'
        f"{_num(f.x0, 6)}</text>",
        f'<text x="{right}" y="{bottom + 16}" text-anchor="middle" font-size="10">'
        f"{_num(f.x1, 6)}</text>",
        f'<text x="{f.left + f.width / 2}" y="{bottom + 30}" text-anchor="middle" '
        'font-size="10" class="muted">step</text>',
    ]
    for value in (f.y1, mid, f.y0):
        parts.append(
            f'<text x="{f.left - 4}" y="{f.y(value) + 3:.1f}" text-anchor="end" '
            f'font-size="10">{_num(value, 3)}</text>'
        )
    return parts


def _markers(f: Frame, events: list[tuple[int, str]]) -> list[str]:
    parts = []
    for step, event in events:
        color, dash, label = MARKER_STYLE[event]
        x = round(f.x(step))
        width = 1 if event == "checkpoint" else 2
        dashes = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<line class="marker-{event}" x1="{x}" y1="{f.top}" x2="{x}" '
            f'y2="{f.top + f.height}" stroke="{color}" stroke-width="{width}"{dashes} '
            f'shape-rendering="crispEdges"><title>{label} at step {step}</title></line>'
        )
        if event != "checkpoint":
            parts.append(
                f'<text x="{x + 3}" y="{f.top + 10}" font-size="10" fill="{color}">'
                f"{label} @{step}</text>"
            )
    return parts


def line_chart(
    title: str, lines: list[tuple[str, str, list[tuple[float, float]]]], events: list[Any]
) -> str:
    """An SVG line chart of (label, colour, points) series with vertical event markers."""
    drawn = [(label, color, pts) for label, color, pts in lines if pts]
    if not drawn:
        return ""
    f = _frame([pts for _, _, pts in drawn], events)
    parts = [
        f'<svg width="{f.left + f.width + 16}" height="{f.top + f.height + 40}" role="img" '
        f'aria-label="{escape(title)}">',
        *_axes(f, title),
        *_markers(f, events),
    ]
    for label, color, pts in drawn:
        coords = " ".join(f"{f.x(x):.1f},{f.y(y):.1f}" for x, y in pts)
        parts.append(
            f'<polyline class="curve" data-series="{escape(label)}" points="{coords}" '
            f'fill="none" stroke="{color}" stroke-width="2"/>'
        )
        if len(pts) <= MAX_DOTS:
            parts.extend(
                f'<circle cx="{f.x(x):.1f}" cy="{f.y(y):.1f}" r="3" fill="{color}">'
                f"<title>{escape(label)} step {int(x)}: {_num(y, 6)}</title></circle>"
                for x, y in pts
            )
    parts.append("</svg>")
    return "".join(parts)


def _header(step: FinetuneStepSpec, results: dict[str, Any]) -> str:
    p, spec = step.producer, step.spec
    model = step.model.uri if step.model else "designed from scratch"
    resumed = results.get("resumed_from_step")
    return (
        f"<h1>Training report: {escape(p.name)}</h1>"
        f"<p>{escape(p.kind)} <code>{escape(p.namespace)}/{escape(p.name)}</code>, run "
        f"<code>{escape(p.run_id)}</code> — {escape(spec.method)} {escape(spec.objective)} "
        f"of <code>{escape(model)}</code> on <code>{escape(step.dataset.uri)}</code>."
        + (f" Resumed from the checkpoint of step {int(resumed)}." if resumed else "")
        + "</p>"
    )


SUMMARY_ROWS = [
    ("steps", "Steps"),
    ("total_steps", "Planned steps"),
    ("train_loss", "Train loss (last window)"),
    ("eval_loss", "Eval loss"),
    ("eval_perplexity", "Eval perplexity"),
    ("perplexity", "Perplexity (whole records)"),
    ("tokens_seen", "Tokens seen"),
    ("tokens_per_second", "Tokens per second"),
    ("train_seconds", "Training seconds"),
    ("mfu", "MFU"),
    ("resumed_from_step", "Resumed from step"),
    ("stopped_early", "Stopped early"),
]


def _summary(results: dict[str, Any], events: list[tuple[int, str]]) -> str:
    rows = [
        f"<tr><td>{label}</td><td class=num>{_num(results[key])}</td></tr>"
        for key, label in SUMMARY_ROWS
        if key in results
    ]
    for event in MARKER_STYLE:
        steps = [str(s) for s, e in events if e == event]
        if steps:
            rows.append(
                f"<tr><td>{MARKER_STYLE[event][2].capitalize()} (steps)</td>"
                f"<td class=num>{escape(', '.join(steps))}</td></tr>"
            )
    return f"<h2>Summary</h2><table><tr><th>Metric</th><th>Value</th></tr>{''.join(rows)}</table>"


def _legend() -> str:
    items = [f'<span style="background:{TRAIN_COLOR}"></span>train']
    items.append(f'<span style="background:{EVAL_COLOR}"></span>eval')
    items += [
        f'<span style="background:{c}"></span>{label}' for c, _, label in MARKER_STYLE.values()
    ]
    return f'<p class="legend">{"".join(items)}</p>'


def render(step: FinetuneStepSpec, records: list[dict[str, Any]], results: dict[str, Any]) -> str:
    """The report's HTML."""
    events = events_of(records)
    charts = []
    for title, keys in CHARTS:
        lines = [(label, color, series_of(records, key)) for key, label, color in keys]
        chart = line_chart(title, lines, events)
        if chart:
            charts.append(f'<div class="chart">{chart}</div>')
    body = (
        _header(step, results)
        + _summary(results, events)
        + "<h2>Curves</h2>"
        + _legend()
        + (f"<div class=charts>{''.join(charts)}</div>" if charts else "<p>No curves.</p>")
    )
    return page("kubetune training report", STYLE, body)


def write(out: Path, step: FinetuneStepSpec, results: dict[str, Any]) -> Path:
    """Write ``training-report.html`` into ``out`` (temporary name, then rename)."""
    final = out / REPORT_FILE
    tmp = out / f".{REPORT_FILE}.tmp"
    tmp.write_text(render(step, read_records(out), results), encoding="utf-8")
    tmp.rename(final)
    return final
