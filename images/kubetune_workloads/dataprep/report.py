"""``stats.json`` and the human-readable data card (``README.md``) of a prepared dataset.

Both are computed from the run that produced them and hold nothing time-dependent, so they
are part of the deterministic content hash.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubetune.api.dataset import DatasetSpec

from kubetune_workloads.dataprep.output import data_spec
from kubetune_workloads.dataprep.pipeline import Outcome
from kubetune_workloads.dataprep.sources import display_uri
from kubetune_workloads.dataprep.tokens import histogram


def build_stats(spec: DatasetSpec, outcome: Outcome, version: str) -> dict[str, Any]:
    stats = outcome.stats
    malformed_examples = {
        k.split(".", 1)[1]: v
        for k, v in sorted(stats.examples.items())
        if k.startswith(("read.", "schema."))
    }
    filters = outcome.filters
    return {
        "version": version,
        "schema": spec.record_schema,
        "records": {
            "read": outcome.read,
            "out": outcome.records,
            **outcome.splits,
        },
        "words": outcome.words,
        "stages": stats.stages(),
        "dropped": stats.stage_counts(),
        "changed": dict(sorted(stats.changed.items())),
        "malformed": {
            "count": outcome.malformed,
            "ratio": round(outcome.malformed / outcome.read, 6) if outcome.read else 0.0,
            "maxErrorRatio": spec.max_error_ratio,
            "examples": malformed_examples,
        },
        "sources": outcome.sources,
        "pii": dict(sorted(filters.pii_counts.items())),
        "offensive": {
            "mode": spec.safety.offensive.mode if spec.safety.offensive.enabled else "off",
            "dropped": stats.dropped.get("offensive.offensive_terms", 0),
            "redactedRecords": filters.offensive_redactions,
        },
        "tokens": histogram(outcome.token_lengths) if outcome.token_lengths is not None else None,
        "tokenizer": outcome.tokenizer,
        "languages": outcome.languages,
        "balance": outcome.balance,
        "spec": _public_spec(spec),
    }


def _public_spec(spec: DatasetSpec) -> dict[str, Any]:
    """The data spec with credentials stripped from source URIs."""
    data = data_spec(spec)
    for source in data.get("sources", []):
        source["uri"] = display_uri(source["uri"])
    return data


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def data_card(name: str, spec: DatasetSpec, stats: dict[str, Any]) -> str:
    """A Markdown data card summarizing what went in, what came out, and why: one section per
    phase of :data:`CARD_SECTIONS`, each from ``stats.json``'s content."""
    parts = [f"# Dataset card: {name}", ""]
    for section in CARD_SECTIONS:
        parts += section(spec, stats)
    return "\n".join(parts)


def _summary(spec: DatasetSpec, stats: dict[str, Any]) -> list[str]:
    records = stats["records"]
    return [
        f"- **Version:** `{stats['version']}`",
        f"- **Schema:** `{stats['schema']}`; format `{spec.output_format}`",
        f"- **Records:** {records['out']} ({records.get('train', 0)} train, "
        f"{records.get('validation', 0)} validation) from {records['read']} read",
        f"- **Words:** {stats['words']}"
        + (f"; **tokens:** {stats['tokens']['total']}" if stats["tokens"] else ""),
        f"- **Split:** validation fraction {spec.split.validation_fraction}, "
        f"seed {spec.split.seed} (assignment by record hash)",
    ]


def _sources(spec: DatasetSpec, stats: dict[str, Any]) -> list[str]:
    rows = [
        [f"`{s['uri']}`", s["format"], s["weight"], s["read"], s["malformed"], s["kept"]]
        for s in stats["sources"]
    ]
    return [
        "",
        "## Sources",
        "",
        _table(["URI", "format", "weight", "read", "malformed", "kept"], rows),
    ]


def _pipeline(spec: DatasetSpec, stats: dict[str, Any]) -> list[str]:
    """The stages met, in pipeline order (``stats.json`` orders them by :data:`.stages.STAGES`)."""
    rows = [
        [
            s["stage"],
            s["in"],
            s["out"],
            ", ".join(f"{k}: {v}" for k, v in s["dropped"].items()) or "-",
        ]
        for s in stats["stages"]
    ]
    parts = ["", "## Pipeline", "", _table(["stage", "in", "out", "dropped (reason: count)"], rows)]
    if stats["changed"]:
        changed = ", ".join(f"{k}: {v}" for k, v in stats["changed"].items())
        parts += ["", "Modified but kept: " + changed]
    return parts


def _safety(spec: DatasetSpec, stats: dict[str, Any]) -> list[str]:
    pii, offensive = stats["pii"], stats["offensive"]
    return [
        "",
        "## Safety",
        "",
        "- PII replaced by typed placeholders: "
        + (", ".join(f"{k}: {v}" for k, v in pii.items()) if pii else "none found"),
        f"- Offensive content ({offensive['mode']}): {offensive['dropped']} records dropped, "
        f"{offensive['redactedRecords']} redacted",
    ]


def _balance(spec: DatasetSpec, stats: dict[str, Any]) -> list[str]:
    balance = stats["balance"]
    if not balance:
        return []
    after = balance.get("after", {})
    rows = [
        [
            group,
            entry["count"],
            entry["proportion"],
            after.get(group, {}).get("count", 0),
            after.get(group, {}).get("proportion", 0.0),
            entry.get("target", "-"),
        ]
        for group, entry in balance["before"].items()
    ]
    headers = ["group", "before", "share", "after", "share", "target"]
    return ["", f"## Balance (by {balance['groupBy']})", "", _table(headers, rows)]


def _tokens(spec: DatasetSpec, stats: dict[str, Any]) -> list[str]:
    t = stats["tokens"]
    if not t:
        return []
    return [
        "",
        "## Tokens",
        "",
        f"Tokenizer: {stats['tokenizer']}. Per record: min {t['min']}, mean {t['mean']}, "
        f"p50 {t['p50']}, p90 {t['p90']}, p99 {t['p99']}, max {t['max']}.",
        "",
        _table(["tokens", "records"], [[k, v] for k, v in t["buckets"].items()]),
    ]


def _languages(spec: DatasetSpec, stats: dict[str, Any]) -> list[str]:
    lang = stats["languages"]
    if not lang:
        return []
    counts = ", ".join(f"{k}: {v}" for k, v in lang["counts"].items())
    return ["", "## Languages", "", f"Detected on {lang['detectedOn']}: " + counts]


def _malformed(spec: DatasetSpec, stats: dict[str, Any]) -> list[str]:
    if not stats["malformed"]["count"]:
        return []
    parts = ["", "## Malformed input", ""]
    for reason, examples in stats["malformed"]["examples"].items():
        parts.append(f"- `{reason}`: " + "; ".join(f"`{e}`" for e in examples))
    return parts


def _limitations(spec: DatasetSpec, stats: dict[str, Any]) -> list[str]:
    return [
        "",
        "## Limitations",
        "",
        "Filters are heuristic: keyword curation, lexicon-based offensive filtering and "
        "regex PII detection miss what they do not list, and may remove benign text. Review "
        "the examples above and the dropped counts before training on this data.",
        "",
    ]


# The data card's sections, in order: each returns its lines.
CARD_SECTIONS: tuple[Callable[[DatasetSpec, dict[str, Any]], list[str]], ...] = (
    _summary,
    _sources,
    _pipeline,
    _safety,
    _balance,
    _tokens,
    _languages,
    _malformed,
    _limitations,
)
