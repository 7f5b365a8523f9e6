"""A self-contained HTML report: no scripts, no external CSS; charts are inline SVG.

Sections: verdict and gates, a summary table (candidate, baseline, delta with intervals,
wins/ties/losses), per-tag bar charts, bias probes, the worst cases, and every case with the
candidate and baseline outputs side by side.
"""

from __future__ import annotations

from html import escape
from typing import Any

from kubetune_workloads.htmlpage import BASE_STYLE, page
from kubetune_workloads.htmlpage import number as _num

MAX_CASE_ROWS = 500
CANDIDATE_COLOR = "#2563eb"
BASELINE_COLOR = "#f59e0b"
STYLE = (
    BASE_STYLE
    + """
.pass{color:#fff;background:#16a34a}.fail{color:#fff;background:#dc2626}
.badge{display:inline-block;padding:4px 12px;border-radius:6px;font-weight:700}
.win{color:#15803d}.loss{color:#b91c1c}
pre{white-space:pre-wrap;margin:0;max-width:420px;font-size:13px}
"""
)


def _pre(text: Any) -> str:
    return f"<pre>{escape('' if text is None else str(text))}</pre>"


def _verdict(results: dict[str, Any]) -> str:
    ok = results["passed"]
    badge = f'<span class="badge {"pass" if ok else "fail"}">{"PASSED" if ok else "FAILED"}</span>'
    base = results["baseline"]
    return (
        f"<h1>Evaluation report {badge}</h1>"
        f"<p>Candidate <code>{escape(results['candidate']['uri'])}</code>"
        + (f" vs baseline <code>{escape(base['uri'])}</code>" if base else "")
        + f" — {results['cases']} cases, {int(results['confidence'] * 100)}% bootstrap "
        f"intervals ({results['bootstrapSamples']} resamples).</p>" + _left_out(results)
    )


def _left_out(results: dict[str, Any]) -> str:
    unpaired = results.get("unpairedCases") or {}
    if not unpaired:
        return ""
    paired = results.get("pairedCases", results["cases"] - len(unpaired))
    both = " of both models" if results["baseline"] else ""
    return (
        f"<p class=muted>Every number and gate below uses the {paired} cases{both} that were "
        f"scored; {len(unpaired)} left out: "
        + escape("; ".join(f"{k} ({v})" for k, v in list(unpaired.items())[:10]))
        + ("…" if len(unpaired) > 10 else "")
        + "</p>"
    )


def _gates(results: dict[str, Any]) -> str:
    rows = [
        f'<tr><td>{escape(g["name"])}</td><td class="{"win" if g["passed"] else "loss"}">'
        f"{'pass' if g['passed'] else 'FAIL'}</td><td>{escape(g['message'])}</td></tr>"
        for g in results["gates"]
    ]
    for probe in results["biasProbes"]:
        ok = probe["passed"]
        rows.append(
            f'<tr><td>bias:{escape(probe["name"])}</td><td class="{"win" if ok else "loss"}">'
            f"{'pass' if ok else 'FAIL'}</td><td>score gap {_num(probe['scoreGap'])}"
            f" (max {_num(probe['maxScoreGap'])})</td></tr>"
        )
    if not rows:
        return "<h2>Gates</h2><p class=muted>No gates configured.</p>"
    return (
        "<h2>Gates</h2><table><tr><th>Gate</th><th>Result</th><th>Detail</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _summary(results: dict[str, Any]) -> str:
    cand = results["candidate"]["aggregates"]
    base = (results["baseline"] or {}).get("aggregates", {})
    comp = results["comparison"]
    head = "<tr><th>Metric</th><th>Candidate</th><th>95% CI</th><th>n</th>"
    if results["baseline"]:
        head += "<th>Baseline</th><th>Delta</th><th>Delta 95% CI</th><th>W / T / L</th>"
    rows = []
    for metric, agg in cand.items():
        row = (
            f"<tr><td>{escape(metric)}</td><td class=num>{_num(agg['mean'])}</td>"
            f"<td class=num>[{_num(agg['ciLow'])}, {_num(agg['ciHigh'])}]</td>"
            f"<td class=num>{agg['n']}</td>"
        )
        if results["baseline"]:
            b, c = base.get(metric), comp.get(metric)
            row += f"<td class=num>{_num(b['mean']) if b else '—'}</td>"
            if c:
                row += (
                    f"<td class=num>{_num(c['delta'])}</td>"
                    f"<td class=num>[{_num(c['ciLow'])}, {_num(c['ciHigh'])}]</td>"
                    f"<td class=num><span class=win>{c['wins']}</span> / {c['ties']} / "
                    f"<span class=loss>{c['losses']}</span></td>"
                )
            else:
                row += "<td>—</td><td>—</td><td>—</td>"
        rows.append(row + "</tr>")
    return f"<h2>Summary</h2><table>{head}</tr>{''.join(rows)}</table>"


def bar_chart(title: str, groups: list[tuple[str, list[float | None]]], colors: list[str]) -> str:
    """An SVG grouped bar chart: one group per label, one bar per series."""
    width, height, left, bottom, top = 460, 220, 48, 40, 24
    values = [v for _, vs in groups for v in vs if v is not None]
    peak = max(values, default=0.0) or 1.0
    plot_w, plot_h = width - left - 8, height - bottom - top
    slot = plot_w / max(len(groups), 1)
    bar = max(min(slot * 0.8 / max(len(colors), 1), 48), 2)
    parts = [
        f'<svg width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13" '
        f'font-weight="600">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 8}" y2="{top + plot_h}" '
        'stroke="#9ca3af"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" font-size="10">'
        f"{_num(peak, 3)}</text>",
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="10">0</text>',
    ]
    for i, (label, series) in enumerate(groups):
        x0 = left + i * slot + (slot - bar * len(series)) / 2
        for j, value in enumerate(series):
            if value is None:
                continue
            h = max(plot_h * value / peak, 1)
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{top + plot_h - h:.1f}" width="{bar - 2:.1f}" '
                f'height="{h:.1f}" fill="{colors[j]}"><title>{escape(label)}: '
                f"{_num(value)}</title></rect>"
            )
        parts.append(
            f'<text x="{left + (i + 0.5) * slot:.1f}" y="{height - bottom + 16}" '
            f'text-anchor="middle" font-size="11">{escape(label[:14])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _tag_charts(results: dict[str, Any]) -> str:
    cand_tags = results["candidate"]["byTag"]
    base_tags = (results["baseline"] or {}).get("byTag", {})
    colors = [CANDIDATE_COLOR] + ([BASELINE_COLOR] if results["baseline"] else [])
    metrics = list(dict.fromkeys(m for tag in cand_tags.values() for m in tag))
    charts = []
    for metric in metrics:
        groups = []
        for tag, aggs in cand_tags.items():
            series = [aggs.get(metric, {}).get("mean")]
            if results["baseline"]:
                series.append(base_tags.get(tag, {}).get(metric, {}).get("mean"))
            groups.append((tag, series))
        charts.append(f'<div class="chart">{bar_chart(metric, groups, colors)}</div>')
    legend = (
        f'<p class="legend"><span style="background:{CANDIDATE_COLOR}"></span>candidate'
        + (
            f'<span style="background:{BASELINE_COLOR}"></span>baseline'
            if results["baseline"]
            else ""
        )
        + "</p>"
    )
    return f"<h2>By tag</h2>{legend}<div class=charts>{''.join(charts)}</div>"


def _probes(results: dict[str, Any]) -> str:
    if not results["biasProbes"]:
        return ""
    out = ["<h2>Bias probes</h2>"]
    for probe in results["biasProbes"]:
        groups = probe["groups"]
        rows = "".join(
            f"<tr><td>{escape(label)}</td><td class=num>{g['n']}</td>"
            f"<td class=num>{_num(g['meanScore'])}</td><td class=num>{_num(g['meanLength'])}</td>"
            f"<td class=num>{_num(g['offensiveRate'])}</td></tr>"
            for label, g in groups.items()
        )
        worst = "".join(
            f"<tr><td>{_pre(w['promptA'])}</td><td>{_pre(w['outputA'])}</td>"
            f"<td>{_pre(w['promptB'])}</td><td>{_pre(w['outputB'])}</td></tr>"
            for w in probe["worst"]
        )
        out.append(
            f"<h3>{escape(probe['name'])}: {probe['pairs']} pairs, score gap "
            f"{_num(probe['scoreGap'])}, outputs differ in {_num(probe['outputDiffRate'])}</h3>"
            "<table><tr><th>Group</th><th>n</th><th>Mean score</th><th>Mean length</th>"
            f"<th>Offensive rate</th></tr>{rows}</table>"
            "<table><tr><th>Prompt A</th><th>Output A</th><th>Prompt B</th><th>Output B</th>"
            f"</tr>{worst}</table>"
        )
    return "".join(out)


def _worst(results: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{escape(str(w['id']))}</td><td>{_pre(w['prompt'])}</td>"
        f"<td>{_pre(w['expected'])}</td><td>{_pre(w['output'])}</td>"
        f"<td>{_pre(w['baselineOutput'])}</td><td class=num>{_num(w['quality'])}</td></tr>"
        for w in results["worstCases"]
    )
    return (
        "<h2>Worst cases</h2><table><tr><th>Case</th><th>Prompt</th><th>Expected</th>"
        f"<th>Candidate</th><th>Baseline</th><th>Quality</th></tr>{rows}</table>"
    )


def _cases(rows: list[dict[str, Any]]) -> str:
    body = []
    for row in rows[:MAX_CASE_ROWS]:
        prompt = row.get("prompt") or "\n".join(
            f"{m['role']}: {m['content']}" for m in row.get("messages") or []
        )
        cells = [escape(str(row.get("id"))), _pre(prompt), _pre(row.get("expected"))]
        for label in ("candidate", "baseline"):
            res = row.get(label)
            if res is None:
                cells.append("—")
            elif "skipped" in res:
                cells.append(f"<span class=muted>skipped: {escape(res['skipped'])}</span>")
            else:
                scores = ", ".join(f"{k} {_num(v, 3)}" for k, v in res["scores"].items())
                cells.append(f"{_pre(res['output'])}<span class=muted>{escape(scores)}</span>")
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    more = (
        f"<p class=muted>{len(rows) - MAX_CASE_ROWS} more cases in cases.jsonl</p>"
        if len(rows) > MAX_CASE_ROWS
        else ""
    )
    return (
        "<h2>Cases: candidate vs baseline</h2><table><tr><th>Case</th><th>Prompt</th>"
        f"<th>Expected</th><th>Candidate</th><th>Baseline</th></tr>{''.join(body)}</table>{more}"
    )


def render(results: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    """The report for ``results.json`` data and ``cases.jsonl`` rows."""
    body = (
        _verdict(results)
        + _gates(results)
        + _summary(results)
        + _tag_charts(results)
        + _probes(results)
        + _worst(results)
        + _cases(rows)
    )
    return page("kubetune evaluation", STYLE, body)
