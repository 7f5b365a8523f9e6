"""What the self-contained HTML reports (evaluation, training) share: base CSS, numbers, page.

No scripts and no external assets: a page is one string with its CSS inline.
"""

from __future__ import annotations

from html import escape
from typing import Any

BASE_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#1f2937;
background:#f9fafb}
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:2px solid #e5e7eb;padding-bottom:4px}
table{border-collapse:collapse;background:#fff;margin:8px 0;font-size:14px}
th,td{border:1px solid #e5e7eb;padding:6px 10px;text-align:left;vertical-align:top}
th{background:#f3f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#6b7280}.charts{display:flex;flex-wrap:wrap;gap:16px}
.chart{background:#fff;border:1px solid #e5e7eb;padding:8px}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px}
"""


def number(value: Any, digits: int = 4) -> str:
    """A table cell's text: ``—`` for None, floats to ``digits`` significant digits, escaped."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return escape(str(value))


def page(title: str, style: str, body: str) -> str:
    """A whole HTML document: ``title``, inline ``style`` and ``body`` (already HTML)."""
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{style}</style></head><body>"
        + body
        + "</body></html>"
    )
